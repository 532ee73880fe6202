"""Room devices armed ahead of meetings: the pure arming plan, its executor, the assumptions."""
