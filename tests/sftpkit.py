"""A real SFTP server for the tests: asyncssh in a thread of its own on a free loopback port, with password
and public-key auth, a chroot folder, its host key in a known_hosts file, and a switch that drops the
connection in the middle of a file."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sourcekit

USER = "calls"
PASSWORD = "s3cret-sftp-password"


def require() -> None:
    sourcekit.require("asyncssh", "paramiko")


class SftpServer:
    def __init__(self, folder: Path) -> None:
        import asyncssh

        self.root = folder / "chroot"
        self.root.mkdir(parents=True)
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_file = folder / "id_ed25519"
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        client_key.write_private_key(str(self.client_key_file))
        self.client_key_file.chmod(0o600)
        self._authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())
        self.known_hosts = folder / "known_hosts"
        self.drop_after: int | None = None  # bytes into a file after which the next read drops the connection
        self.drops = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def start(self) -> SftpServer:
        import asyncssh

        outer = self

        class Auth(asyncssh.SSHServer):
            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == USER and password == PASSWORD

        class Files(asyncssh.SFTPServer):
            def __init__(self, chan) -> None:  # type: ignore[no-untyped-def]
                super().__init__(chan, chroot=str(outer.root).encode())

            def read(self, file_obj, offset: int, size: int):  # type: ignore[no-untyped-def]
                if outer.drop_after is not None and offset >= outer.drop_after:
                    outer.drop_after = None
                    outer.drops += 1
                    self.connection.abort()
                return super().read(file_obj, offset, size)

        async def listen():  # type: ignore[no-untyped-def]
            return await asyncssh.create_server(
                Auth, "127.0.0.1", 0, server_host_keys=[self.host_key], authorized_client_keys=self._authorized,
                sftp_factory=Files, allow_scp=False)

        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(listen(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {self.host_key.export_public_key().decode()}")
        return self

    def url(self, path: str) -> str:
        return f"sftp://{USER}@127.0.0.1:{self.port}/{path.lstrip('/')}"

    def stop(self) -> None:
        async def close() -> None:
            self._server.close()
            await self._server.wait_closed()
            others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in others:  # connections still open: end their handlers before the loop goes
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def sftp(tmp_path: Path) -> Iterator[SftpServer]:
    require()
    server = SftpServer(tmp_path / "sftp").start()
    try:
        yield server
    finally:
        server.stop()
