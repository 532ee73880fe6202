"""The sync planner (pure) and executor."""
