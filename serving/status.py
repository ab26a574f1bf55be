"""Canonical error codes shared by the server, the client and both wire protocols.

gRPC carries the code itself; TF Serving's REST API maps it to an HTTP status (the table of
its `ToHTTPStatusCode`) and puts the message in `{"error": ...}`.
"""

from tfgcrf.errors import UserError

# gRPC message size limit in both directions, as TF Serving sets it (`SetMaxMessageSize(kint32max)`):
# protobuf cannot encode a larger message anyway.
MAX_GRPC_MESSAGE_BYTES = 2**31 - 1

# Canonical code names in numeric order (the numbers of gRPC and of tf.errors.OpError.error_code).
CODE_NAMES = (
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
)

HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

# HTTP status -> the most common code that produces it (several codes share 400, 409 and 500).
_CODE_FOR_HTTP = {}
for _name in ("INVALID_ARGUMENT", "ABORTED", "INTERNAL", *CODE_NAMES):
    _CODE_FOR_HTTP.setdefault(HTTP_STATUS[_name], _name)
# 413: a REST body above `tfgcrf serve --rest-max-body-bytes` (gRPC's code for a message above
# its size limit).
_CODE_FOR_HTTP[413] = "RESOURCE_EXHAUSTED"


def code_for_http_status(status):
    """Best canonical code name for an HTTP error status (UNKNOWN for unlisted ones)."""
    return _CODE_FOR_HTTP.get(status, "UNKNOWN")


class ServingError(UserError):
    """A failed serving call: a canonical `code` name (e.g. "INVALID_ARGUMENT") and a message.

    Args:
      code: canonical code name from `CODE_NAMES`.
      message: what went wrong, as the server reported it.
    """

    def __init__(self, code, message):
        if code not in HTTP_STATUS:
            raise ValueError(f"unknown status code name {code!r}")
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
