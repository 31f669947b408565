"""Who may call what: the roles and the one table mapping every RPC to the least role it needs.

Roles are hierarchical (viewer < operator < admin): a role may do everything the roles below it
may. The table below is the whole authorization policy of the gRPC API; `auth_interceptor.py`
enforces it before any handler runs, and a method missing from it is refused (fail closed), so a
new RPC cannot go live unguarded. Ownership of exports (a caller sees only its own, admins see
all) is enforced by the domain (`exports.py`), not here.
"""

from __future__ import annotations

from sparc_video.core.roles import Role as Role

_EXPORTS = "/sparc.video.v1.ExportService/"
_CAMERAS = "/sparc.video.v1.CameraService/"
_UPLOADS = "/sparc.video.v1.UploadService/"
_AUDIT = "/sparc.video.v1.AuditService/"

# The least role each RPC needs, by full gRPC method name.
METHOD_ROLES: dict[str, Role] = {
    # Reads. Exports are read only by their requester (or an admin), so a viewer, which cannot
    # create exports, mostly reads cameras and recordings.
    _EXPORTS + "GetExport": Role.VIEWER,
    _EXPORTS + "ListExports": Role.VIEWER,
    _EXPORTS + "WatchExport": Role.VIEWER,
    _EXPORTS + "GetExportDownloadUrl": Role.VIEWER,
    # The public key that verifies export manifests: any principal (an investigator's viewer
    # token) may fetch it; `sparc-video verify --public-key` needs no server at all.
    _EXPORTS + "GetManifestSigningKey": Role.VIEWER,
    _CAMERAS + "GetCamera": Role.VIEWER,
    _CAMERAS + "ListCameras": Role.VIEWER,
    _CAMERAS + "GetRecording": Role.VIEWER,
    _CAMERAS + "ListRecordings": Role.VIEWER,
    _CAMERAS + "GetCameraTimeline": Role.VIEWER,
    _CAMERAS + "WatchCamera": Role.VIEWER,
    # Live view: watching a camera is what a viewer is for. The browser's signed links are
    # handed out by GetCameraLiveStream, so they carry this same check.
    _CAMERAS + "GetCameraLiveStream": Role.VIEWER,
    _CAMERAS + "StreamCameraLive": Role.VIEWER,
    # Work that costs compute, touches cameras or adds data.
    _EXPORTS + "CreateExport": Role.OPERATOR,
    _EXPORTS + "CancelExport": Role.OPERATOR,
    _CAMERAS + "CreateCamera": Role.OPERATOR,
    _CAMERAS + "UpdateCamera": Role.OPERATOR,
    _CAMERAS + "ProbeCamera": Role.OPERATOR,
    _CAMERAS + "CaptureSnapshot": Role.OPERATOR,
    _CAMERAS + "CreateRecording": Role.OPERATOR,
    _CAMERAS + "CreateRecordingUploadUrl": Role.OPERATOR,
    # Uploads of export sources: as CreateExport, which they feed. Each caller sees only its
    # own uploads (the domain, `uploads/service.py`).
    _UPLOADS + "CreateUpload": Role.OPERATOR,
    _UPLOADS + "GetUpload": Role.OPERATOR,
    _UPLOADS + "CompleteUpload": Role.OPERATOR,
    _UPLOADS + "CancelUpload": Role.OPERATOR,
    # Destroying evidence and seeing everyone's workload.
    _CAMERAS + "DeleteCamera": Role.ADMIN,
    _CAMERAS + "DeleteRecording": Role.ADMIN,
    _EXPORTS + "GetQueueStats": Role.ADMIN,
    # The chain of custody names every principal's actions on every case.
    _AUDIT + "ListAuditEntries": Role.ADMIN,
}

# Callable without credentials: load balancers and orchestrators probe health anonymously.
PUBLIC_METHODS = frozenset(
    {
        "/grpc.health.v1.Health/Check",
        "/grpc.health.v1.Health/Watch",
    }
)

# Server reflection: public by default (`GRPC_REFLECTION=public`) so grpcurl can discover the
# API; `authenticated` makes it need any valid principal (viewer), `off` does not serve it.
REFLECTION_METHODS = frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
