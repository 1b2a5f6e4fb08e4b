# SPDX-License-Identifier: Apache-2.0
"""Shared by the Python tests that start thawd themselves."""
import socket
import time


def wait_listening(sock, seconds=30):
    """Return once thawd accepts connections on sock, False after `seconds`.

    The socket file appears at bind, before thawd has chmod-ed it and called
    listen, so a test that only waited for the file could connect in that
    gap and be refused (ECONNREFUSED).
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(sock)
            return True
        except OSError:
            time.sleep(0.02)
        finally:
            s.close()
    return False
