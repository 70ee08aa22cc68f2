"""Function targets (api, upload, kew, pbc, monitor). Each role is picked by ``functions-framework --target <role>``.

Handlers are imported on first call, so a role loads only what it uses; the settings
are read at start-up so a bad value stops the process with a message naming it.
"""

from shared.config import get_settings

get_settings()


def api(request):
    from functions.api.app import handle

    return handle(request)


def upload(request):
    from functions.upload.handler import handle

    return handle(request)


def kew(request):
    from functions.kew.handler import handle

    return handle(request)


def pbc(request):
    from functions.pbc.handler import handle

    return handle(request)


def monitor(request):
    from functions.monitor.handler import handle

    return handle(request)
