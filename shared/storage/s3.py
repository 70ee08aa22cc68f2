"""`Storage` on an S3 bucket (or any S3-compatible store) through boto3.

S3 has no directories: a directory exists if a zero-byte marker object ``dir/`` or any
object under ``dir/`` exists. So that a directory outlives its last file, as a folder
does, every removal writes a marker for the parent directory of what it removed.
boto3 is imported by the constructor only: the local stack never pays for it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterable, Iterator

from .base import CHUNK_SIZE, FileInfo, Listing, check_key, check_prefix

PART_SIZE = 8 << 20  # multipart part size; also the largest content sent with one put_object
DELETE_BATCH = 1000  # the most keys delete_objects takes


class S3Storage:
    """Objects under `prefix` in `bucket`; `create_bucket` makes a missing bucket (dev/test stores)."""

    def __init__(
        self, bucket: str, prefix: str = "", endpoint_url: str | None = None, *, create_bucket: bool = False
    ) -> None:
        import boto3
        from botocore.config import Config

        # Path-style addressing: S3-compatible stores (MinIO, moto) rarely serve bucket subdomains.
        config = Config(s3={"addressing_style": "path"}) if endpoint_url else None
        self._s3: Any = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
        self.bucket = bucket
        self._base = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._check_bucket(create_bucket)

    def _check_bucket(self, create: bool) -> None:
        try:
            self._s3.head_bucket(Bucket=self.bucket)
            return
        except self._s3.exceptions.ClientError as e:
            if _code(e) not in ("404", "NoSuchBucket"):
                raise
        if not create:
            from shared.config import ConfigError

            raise ConfigError(f"storage bucket {self.bucket!r} does not exist")
        region = self._s3.meta.region_name
        extra: dict[str, Any] = {}
        if region and region != "us-east-1":  # us-east-1 rejects an explicit location
            extra["CreateBucketConfiguration"] = {"LocationConstraint": region}
        self._s3.create_bucket(Bucket=self.bucket, **extra)

    def _key(self, key: str) -> str:
        return self._base + check_key(key)

    def _dir(self, prefix: str) -> str:
        """The object-key prefix of a directory, ending in '/' (the bare base for the root)."""
        return self._base + check_prefix(prefix) + "/" if prefix else self._base

    def _objects(self, dir_key: str) -> Iterator[dict[str, Any]]:
        """Every object whose key starts with `dir_key`."""
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=dir_key):
            yield from page.get("Contents", [])

    def _keep_parent(self, key: str) -> None:
        """Write the marker of `key`'s parent directory, so removing `key` does not remove it."""
        if "/" in key:
            self._s3.put_object(Bucket=self.bucket, Key=self._base + key.rsplit("/", 1)[0] + "/", Body=b"")

    def write(self, key: str, chunks: Iterable[bytes]) -> int:
        """put_object for content up to one part, else a multipart upload aborted on any error."""
        obj = self._key(key)
        buf = bytearray()
        written = 0
        upload_id = None
        parts: list[dict[str, Any]] = []
        try:
            for chunk in chunks:
                buf += chunk
                written += len(chunk)
                if len(buf) < PART_SIZE:
                    continue
                if upload_id is None:
                    upload_id = self._s3.create_multipart_upload(Bucket=self.bucket, Key=obj)["UploadId"]
                self._upload_part(obj, upload_id, parts, buf)
                buf = bytearray()
            if upload_id is None:
                self._s3.put_object(Bucket=self.bucket, Key=obj, Body=bytes(buf))
                return written
            if buf:
                self._upload_part(obj, upload_id, parts, buf)
            self._s3.complete_multipart_upload(
                Bucket=self.bucket, Key=obj, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            if upload_id is not None:
                self._s3.abort_multipart_upload(Bucket=self.bucket, Key=obj, UploadId=upload_id)
            raise
        return written

    def remove_unfinished(self, older_than: datetime) -> int:
        """Abort multipart uploads under the prefix begun before ``older_than``: their writers died.

        A bucket lifecycle rule (AbortIncompleteMultipartUpload) does the same where one is set.
        """
        aborted = 0
        pages = self._s3.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket, Prefix=self._base)
        for page in pages:
            for upload in page.get("Uploads", []):
                if upload["Initiated"].astimezone(timezone.utc) < older_than:
                    try:
                        self._s3.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                        UploadId=upload["UploadId"])
                        aborted += 1
                    except self._s3.exceptions.NoSuchUpload:  # completed or aborted meanwhile
                        pass
        return aborted

    def _upload_part(self, obj: str, upload_id: str, parts: list[dict[str, Any]], data: bytearray) -> None:
        number = len(parts) + 1
        resp = self._s3.upload_part(
            Bucket=self.bucket, Key=obj, UploadId=upload_id, PartNumber=number, Body=bytes(data)
        )
        parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def open(self, key: str) -> Iterator[bytes]:
        """get_object now (so a missing file raises here), stream the body lazily."""
        try:
            body = self._s3.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self._s3.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        return _read_body(body)

    def local_path(self, key: str) -> str | None:
        """Objects have no path on disk."""
        check_key(key)
        return None

    def stat(self, key: str) -> FileInfo | None:
        """head_object; a missing object is None."""
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._s3.exceptions.ClientError as e:
            if _code(e) in ("404", "NoSuchKey"):
                return None
            raise
        name = key.rsplit("/", 1)[-1]
        return FileInfo(name, head["ContentLength"], head["LastModified"].astimezone(timezone.utc))

    def exists(self, key: str) -> bool:
        """A file object is at the key."""
        return self.stat(key) is not None

    def is_dir(self, prefix: str) -> bool:
        """A marker or any object under the directory."""
        if not prefix:
            return True
        resp = self._s3.list_objects_v2(Bucket=self.bucket, Prefix=self._dir(prefix), MaxKeys=1)
        return resp.get("KeyCount", 0) > 0

    def list_dir(self, prefix: str) -> Listing:
        """One delimited listing: objects are files (except the marker), common prefixes are dirs."""
        base = self._dir(prefix)
        files: list[FileInfo] = []
        dirs: list[str] = []
        found = not prefix
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            for obj in page.get("Contents", []):
                found = True
                if obj["Key"] != base:
                    name = obj["Key"][len(base) :]
                    files.append(FileInfo(name, obj["Size"], obj["LastModified"].astimezone(timezone.utc)))
            for cp in page.get("CommonPrefixes", []):
                found = True
                dirs.append(cp["Prefix"][len(base) : -1])
        if not found:
            raise FileNotFoundError(prefix)
        return Listing(sorted(files, key=lambda f: f.name), sorted(dirs))

    def make_dirs(self, prefix: str) -> None:
        """A marker for every level."""
        parts = check_key(prefix).split("/")
        for i in range(1, len(parts) + 1):
            self._s3.put_object(Bucket=self.bucket, Key=self._base + "/".join(parts[:i]) + "/", Body=b"")

    def delete(self, key: str) -> None:
        """delete_object, after checking it exists (S3 deletes silently)."""
        if not self.exists(key):
            raise FileNotFoundError(key)
        self._keep_parent(key)
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_tree(self, prefix: str) -> None:
        """Batched delete_objects of everything under the directory."""
        base = self._dir(check_key(prefix))
        keys = [obj["Key"] for obj in self._objects(base)]
        if keys:
            self._keep_parent(prefix)
        self._delete_keys(keys)

    def _delete_keys(self, keys: list[str]) -> None:
        for i in range(0, len(keys), DELETE_BATCH):
            batch = [{"Key": k} for k in keys[i : i + DELETE_BATCH]]
            resp = self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if resp.get("Errors"):
                err = resp["Errors"][0]
                raise OSError(f"cannot delete {err['Key']!r}: {err.get('Message', err.get('Code'))}")

    def _copy(self, src: str, dst: str) -> None:
        # The managed copy switches to a multipart copy for large objects (copy_object stops at 5 GiB).
        self._s3.copy({"Bucket": self.bucket, "Key": src}, self.bucket, dst)

    def move(self, src_key: str, dst_key: str) -> None:
        """Server-side copy, then delete the source."""
        src, dst = self._key(src_key), self._key(dst_key)
        if not self.exists(src_key):
            raise FileNotFoundError(src_key)
        if src == dst:  # copy-then-delete would lose the file
            return
        self._copy(src, dst)
        self._keep_parent(src_key)
        self._s3.delete_object(Bucket=self.bucket, Key=src)

    def move_tree(self, src_prefix: str, dst_prefix: str) -> None:
        """Copy every object (markers too) under the new prefix, then delete the old ones."""
        src, dst = self._dir(check_key(src_prefix)), self._dir(check_key(dst_prefix))
        if dst.startswith(src):
            raise ValueError(f"cannot move {src_prefix!r} into itself")
        if not self.is_dir(src_prefix):
            raise FileNotFoundError(src_prefix)
        if self.is_dir(dst_prefix) or self.exists(dst_prefix):
            raise FileExistsError(dst_prefix)
        keys = [obj["Key"] for obj in self._objects(src)]
        for key in keys:  # all copies before any delete: a failure leaves duplicates, never losses
            self._copy(key, dst + key[len(src) :])
        self._keep_parent(src_prefix)
        self._delete_keys(keys)

    def usage(self, prefix: str) -> int:
        """Sum of object sizes under the directory."""
        return sum(obj["Size"] for obj in self._objects(self._dir(prefix)))


def _read_body(body: Any) -> Iterator[bytes]:
    with body:
        yield from body.iter_chunks(CHUNK_SIZE)


def _code(e: Any) -> str:
    return str(e.response.get("Error", {}).get("Code", ""))
