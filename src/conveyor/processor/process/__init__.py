"""The process around the engine: signals, start-up checks, the ops port, and with
CONVEYOR_PROCESSES above 1 the supervisor of several engine processes."""
