"""Function targets. Each role is picked by ``functions-framework --target <role>``.

Handlers are imported on first call, so a role loads only what it uses.
"""


def api(request):
    from functions.api.app import handle

    return handle(request)
