"""Reward heads, Bradley-Terry training, metrics, and the `LatentRewardModel` scorer."""
