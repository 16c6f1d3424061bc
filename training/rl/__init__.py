"""RL post-training of the online policy: rule penalties and the PPO / GAPT loop (``ppo.py``)."""
