"""Training: loss, optimizer, state and sharded step, data stream, checkpoints, monitoring, the loop, recipes."""
