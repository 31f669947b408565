"""Where a client of the service connects, and how long it waits, unless told otherwise: here,
not in `sparc_video.client`, so that the command line shows them in its help without importing
the gRPC client."""

DEFAULT_TARGET = "localhost:50051"
DEFAULT_TIMEOUT_S = 10.0
