"""gRPC handlers of sparc.video.v1.AuditService."""
