"""`latentrm run`: the whole method in one command (data -> features -> sweep -> rm -> audit -> eval -> RL ->
eval -> report), over the stages' own `run()` functions.

- `config.py`: `PipelineConfig`, presets (`presets/run/*.yaml`) and `--set section.field=value`;
- `plan.py`: each stage's config, wired to the run directory and the earlier outputs;
- `run.py`: the chain, with skipping by manifest and `--from STAGE`;
- `cli.py`: the command and its progress display.
"""
