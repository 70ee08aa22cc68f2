"""Stored files as HTTP downloads: sendfile from a local store, a stream from S3."""

from __future__ import annotations

from werkzeug.wrappers import Response


def stored_file_response(ctx, key: str, name: str, mimetype: str, size: int | None) -> Response:
    local = ctx.storage.local_path(key)
    if local is not None:
        from werkzeug.utils import send_file

        return send_file(local, ctx.request.environ, mimetype=mimetype, as_attachment=True,
                         download_name=name, conditional=True, etag=False)
    response = Response(ctx.storage.open(key), mimetype=mimetype, direct_passthrough=True)
    if size is not None:
        response.headers["Content-Length"] = str(size)
    response.headers.set("Content-Disposition", "attachment", filename=name)
    return response
