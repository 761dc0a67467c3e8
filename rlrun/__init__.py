"""rlrun: a command-line experiment runner for reinforcement learning (`rlrun algo=reinforce env=cartpole`)."""
