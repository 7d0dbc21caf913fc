"""Recordings in S3 and S3-compatible stores (MinIO, OVH, Scaleway, Ceph), with boto3 directly.

Why boto3 and not fsspec + s3fs: s3fs opens each file with a 50 MiB read-ahead block (eight workers, eight
blocks: 400 MiB) unless every open is tuned; fsspec caches one filesystem instance per argument set and
shares it across threads, and its async loop thread does not survive a fork. boto3 gives us exactly the
three requests we need, each with its own guarantee:
- ListObjectsV2 (1,000 keys a request) for existence and sizes: no HEAD per object;
- GetObject with `Range: bytes=0-63` for the audio sniff (the first 16 KiB when durations are wanted);
- GetObject with `If-Match: <ETag seen by the listing>` for the upload: the store itself refuses an object
  replaced since validation (412), and the body is read from the socket as it is sent, so memory does not
  grow with the object or the number of workers.
One boto3 client is shared by all threads (botocore clients are thread-safe; sessions are not, so the one
session is used only here, in the constructor). The GETs, one per recording, are presigned by that client and
sent through one urllib3 pool (s3_get.py: a third of boto3's CPU per call); behind a proxy boto3 sends them.

Credentials come from where the AWS CLI finds them (environment, ~/.aws files, `files.s3.profile`, the
instance's role); they are never read from config.yaml, never printed or logged.
"""

from __future__ import annotations

import datetime
import io
import os
import threading
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

from ..errors import SourceError, UsageError
from ..files_config import S3Config
from ..safety import check_base_url, clean_text
from .base import Checked, GuardedStream, Listed, PinnedLike, RangedReader, SourceProblem, changed
from .s3_get import PresignedGets

LIST_POOL = 8  # prefixes listed at once
EXTRA = "pip install 'allobrain-import[s3]'"


def split_url(url: str) -> tuple[str, str]:
    rest = url.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


class S3Backend:
    def __init__(self, cfg: S3Config, pool: int = 32, *, light: bool = True) -> None:
        try:
            import boto3
            import botocore.config
            import botocore.exceptions
            import botocore.session
            import botocore.utils
        except ImportError:
            raise SourceError(f"the manifest has s3:// recordings, but S3 support is not installed: {EXTRA}") from None
        self._exc = botocore.exceptions
        endpoint = cfg.endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint:
            try:
                endpoint = check_base_url(endpoint, "files.s3.endpoint_url (or AWS_ENDPOINT_URL)")
            except UsageError as exc:
                raise SourceError(str(exc)) from None
        self.where = endpoint or "AWS S3"
        try:
            core = botocore.session.Session(profile=cfg.profile)
            # Listing parses a LastModified per key; botocore's default parser (dateutil) is slow at it.
            core.get_component("response_parser_factory").set_parser_defaults(timestamp_parser=parse_timestamp)
            session = boto3.session.Session(botocore_session=core, region_name=cfg.region)
            ca_bundle = core.get_config_variable("ca_bundle")
        except self._exc.ProfileNotFound:
            raise SourceError(f"files.s3.profile: no AWS profile named {cfg.profile!r} in ~/.aws/config or "
                              "~/.aws/credentials; check the name (aws configure list-profiles)") from None
        if session.get_credentials() is None:
            raise SourceError(
                "the manifest has s3:// recordings but no AWS credentials were found: set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or files.s3.profile), as for the AWS CLI")
        config = botocore.config.Config(
            max_pool_connections=pool,
            signature_version="s3v4",  # presigned URLs too (botocore would presign some regions with SigV2)
            connect_timeout=10,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # A custom endpoint (MinIO, Ceph, a loopback test server) rarely has wildcard DNS for buckets.
            s3={"addressing_style": "path"} if endpoint else None,
        )

        def make_client(region: str | None) -> Any:
            return session.client("s3", endpoint_url=endpoint, config=config, region_name=region)

        self._client = make_client(cfg.region)
        self._lock = threading.Lock()
        # Reads go the light way (presigned, urllib3) unless the environment sends the store through a proxy:
        # then boto3 reads too, so that the proxy rules stay botocore's.
        probe = endpoint or f"https://s3.{self._client.meta.region_name or 'us-east-1'}.amazonaws.com"
        direct = not botocore.utils.get_environ_proxies(probe)
        self._gets = PresignedGets(self._client, make_client, pool, ca_bundle) if direct and light else None

    # --- validation -----------------------------------------------------------------------------

    def stat_many(self, locations: Sequence[str]) -> list[Listed]:
        """Existence, size and ETag of every object, from listing the folders the manifest uses: one
        request per 1,000 keys, starting at the common prefix of the wanted keys and stopping past the
        last one, so a folder holding far more than the manifest wants is not listed to its end."""
        wanted: dict[tuple[str, str], set[str]] = defaultdict(set)
        for url in locations:
            bucket, key = split_url(url)
            if bucket and key and not key.endswith("/"):
                wanted[(bucket, key.rpartition("/")[0])].add(key)
        found: dict[tuple[str, str], tuple[int, int, str]] = {}
        folders: set[tuple[str, str]] = set()

        def list_folder(group: tuple[tuple[str, str], set[str]]) -> None:
            (bucket, _folder), keys = group
            objects, prefixes = self._list(bucket, os.path.commonprefix(sorted(keys)), max(keys))
            with self._lock:
                found.update(((bucket, k), v) for k, v in objects.items())
                folders.update((bucket, p.rstrip("/")) for p in prefixes)

        with ThreadPoolExecutor(max_workers=LIST_POOL, thread_name_prefix="s3-list") as pool:
            list(pool.map(list_folder, wanted.items()))
        out: list[Listed] = []
        for url in locations:
            bucket, key = split_url(url)
            hit = found.get((bucket, key))
            if hit is not None:
                out.append(Listed(url, hit[0], hit[1], hit[2], ""))
            elif not key or key.endswith("/") or (bucket, key) in folders:
                out.append(Listed(url, 0, 0, "", f"not a regular file (a folder): {url}"))
            else:
                out.append(Listed(url, 0, 0, "", f"file not found: {url}"))
        return out

    def _list(self, bucket: str, prefix: str, last: str) -> tuple[dict[str, tuple[int, int, str]], list[str]]:
        folder = prefix.rpartition("/")[0] + "/" if "/" in prefix else ""
        objects: dict[str, tuple[int, int, str]] = {}
        prefixes: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/", "MaxKeys": 1000}
            if token:
                kwargs["ContinuationToken"] = token
            page = self._call(self._client.list_objects_v2, f"s3://{bucket}/{folder}", **kwargs)
            if self._gets is not None:
                headers = page.get("ResponseMetadata", {}).get("HTTPHeaders", {})
                self._gets.learn_region(bucket, headers.get("x-amz-bucket-region"))
            for item in page.get("Contents", ()):
                mtime_ns = int(item["LastModified"].timestamp() * 1e9)
                objects[item["Key"]] = (int(item["Size"]), mtime_ns, item.get("ETag", ""))
            prefixes.extend(p["Prefix"] for p in page.get("CommonPrefixes", ()))
            token = page.get("NextContinuationToken")
            keys = [item["Key"] for item in page.get("Contents", ())]
            if not page.get("IsTruncated") or not token or (keys and keys[-1] >= last):
                return objects, prefixes

    def _call(self, method: Any, where: str, **kwargs: Any) -> Any:
        """A listing request; a failure here is the whole store's, so it is one error for the manifest."""
        exc = self._exc
        try:
            return method(**kwargs)
        except exc.NoCredentialsError:
            raise SourceError("no AWS credentials were found for the s3:// recordings: set AWS_ACCESS_KEY_ID "
                              "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or files.s3.profile)") from None
        except (exc.EndpointConnectionError, exc.ConnectTimeoutError, exc.ReadTimeoutError,
                exc.ConnectionClosedError) as e:
            raise SourceError(f"cannot reach the S3 store ({self.where}) to list {where}: "
                              f"{clean_text(e, 160)}; check files.s3.endpoint_url and the network") from None
        except exc.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code == "NoSuchBucket":
                raise SourceError(f"{where}: no such bucket; check the file_path cells (or files.root)") from None
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
                raise SourceError(f"the S3 store refused the AWS credentials ({code}) while listing {where}; "
                                  "check AWS_ACCESS_KEY_ID / AWS_PROFILE") from None
            if code == "AccessDenied" or status == 403:
                raise SourceError(
                    f"access denied listing {where}: validation lists the folders of the manifest, so the "
                    "credentials need s3:ListBucket on the bucket (and s3:GetObject on the recordings)"
                ) from None
            raise SourceError(f"the S3 store answered {code or status} listing {where}: "
                              f"{clean_text(e, 160)}") from None

    def read_head(self, item: Listed, n: int) -> bytes:
        body = self._get(item.location, item.version, f"bytes=0-{n - 1}")
        try:
            return body.read(n)
        finally:
            body.close()  # a store that ignored the Range must not keep sending the rest

    # --- upload and durations -------------------------------------------------------------------

    def open(self, pinned: PinnedLike) -> BinaryIO:
        url = str(pinned.file_path)
        body, length = self._get_sized(url, pinned.file_version, None)
        if length != pinned.file_size:
            body.close()
            raise changed(url, f"size {pinned.file_size} -> {length} bytes")
        return GuardedStream(body, pinned.file_size, url)

    def reader(self, checked: Checked, budget: int) -> BinaryIO | None:
        url = str(checked.path)

        def fetch(start: int, length: int) -> bytes:
            try:
                body = self._get(url, checked.version, f"bytes={start}-{start + length - 1}")
            except SourceProblem as exc:
                raise OSError(exc.message) from None
            try:
                return body.read(length)
            finally:
                body.close()

        # Buffered: a WAV header walk is a dozen small reads, and each raw read would be one request.
        return io.BufferedReader(RangedReader(fetch, checked.size, budget), 16 * 1024)  # type: ignore[return-value]

    def _get(self, url: str, etag: str, byte_range: str | None) -> Any:
        return self._get_sized(url, etag, byte_range)[0]

    def _get_sized(self, url: str, etag: str, byte_range: str | None) -> tuple[Any, int]:
        """GetObject pinned to the ETag validation saw: a replaced object answers 412, not other bytes."""
        bucket, key = split_url(url)
        if self._gets is not None:
            return self._gets.get(url, bucket, key, etag, byte_range)
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if etag:
            kwargs["IfMatch"] = etag
        if byte_range:
            kwargs["Range"] = byte_range
        exc = self._exc
        try:
            answer = self._client.get_object(**kwargs)
        except exc.ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "NoSuchKey") or status in (404, 412):
                raise changed(url, "ETag differs" if status == 412 else "deleted") from None
            if code == "AccessDenied" or status == 403:
                raise SourceProblem(f"the store refused access to {url} (HTTP 403 AccessDenied): the credentials "
                                    "need s3:GetObject on it", retryable=False) from None
            retry = status is None or status >= 500 or status == 429
            raise SourceProblem(f"the store answered {code or status} for {url}", retryable=retry) from None
        except (exc.BotoCoreError, OSError) as e:
            raise SourceProblem(f"cannot read {url} from the store ({clean_text(e, 160)})",
                                retryable=True) from None
        return answer["Body"], int(answer.get("ContentLength", 0))

    def close(self) -> None:
        if self._gets is not None:
            self._gets.close()
        self._client.close()


def parse_timestamp(value: str) -> Any:
    """An S3 timestamp (ISO 8601 in listings) as botocore's parser gives it, ~20 times faster; any other
    form goes to botocore's own parser."""
    if isinstance(value, str) and value[4:5] == "-" and "T" in value:  # not an epoch, not an HTTP date
        try:
            return datetime.datetime.fromisoformat(value)
        except ValueError:
            pass
    from botocore.utils import parse_timestamp as slow

    return slow(value)
