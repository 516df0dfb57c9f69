"""``git http-backend`` behind a threaded stdlib HTTP server: the clone benchmark's second baseline.

One thread per connection (:class:`http.server.ThreadingHTTPServer`), HTTP/1.1 keep-alive, and per
request one ``git http-backend`` child run CGI-style (RFC 3875): the request body (Content-Length
or chunked) is streamed to the child's stdin by a thread while its stdout is read, the CGI header
block is turned into the response head, and the rest is relayed in chunked encoding as it comes.
No Python sits between the pipes but a read/write loop; this is how a plain CGI host serves git.

    python bench/threaded_cgi.py PROJECT_ROOT PORT
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO, Any
from urllib.parse import urlsplit

CHUNK = 65536


def _copy_body(rfile: IO[bytes], headers: Any, stdin: IO[bytes], done: list[bool]) -> None:
    """Request body to the child's stdin, as it arrives (chunked or Content-Length framed);
    appends True to ``done`` once the whole body was read off the connection."""
    try:
        if headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    break
                remaining = size
                while remaining:
                    data = rfile.read(min(remaining, CHUNK))
                    if not data:
                        return
                    stdin.write(data)
                    remaining -= len(data)
                rfile.readline()
            done.append(True)
        else:
            remaining = int(headers.get("Content-Length") or 0)
            while remaining:
                data = rfile.read(min(remaining, CHUNK))
                if not data:
                    return
                stdin.write(data)
                remaining -= len(data)
            done.append(True)
    except (BrokenPipeError, ConnectionResetError, ValueError):
        pass
    finally:
        with contextlib.suppress(BrokenPipeError):
            stdin.close()


def handler(project_root: str) -> type[BaseHTTPRequestHandler]:
    git = shutil.which("git") or "git"

    class CGIHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # small keep-alive replies must not wait for a delayed ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.run_cgi()

        def do_POST(self) -> None:
            self.run_cgi()

        def run_cgi(self) -> None:
            url = urlsplit(self.path)
            env = {
                "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": project_root, "GIT_HTTP_EXPORT_ALL": "1",
                "GIT_CONFIG_NOSYSTEM": "1", "HOME": project_root, "GATEWAY_INTERFACE": "CGI/1.1",
                "REQUEST_METHOD": self.command, "PATH_INFO": url.path, "QUERY_STRING": url.query,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""), "REMOTE_ADDR": self.client_address[0],
                "SERVER_PROTOCOL": "HTTP/1.1",
            }
            chunked_in = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
            if self.headers.get("Content-Length") and not chunked_in:
                env["CONTENT_LENGTH"] = self.headers["Content-Length"]
            for name in ("Git-Protocol", "Content-Encoding"):
                if name in self.headers:
                    env["HTTP_" + name.upper().replace("-", "_")] = self.headers[name]
            has_body = self.command == "POST"
            proc = subprocess.Popen([git, "http-backend"], env=env, stdin=subprocess.PIPE if has_body else
                                    subprocess.DEVNULL, stdout=subprocess.PIPE, bufsize=0)
            assert proc.stdout is not None
            feeder, body_read = None, [not has_body]
            if has_body:
                assert proc.stdin is not None
                feeder = threading.Thread(target=_copy_body, args=(self.rfile, self.headers, proc.stdin, body_read),
                                          daemon=True)
                feeder.start()
            out = proc.stdout
            status, head = 200, []
            reader = io.BufferedReader(io.FileIO(os.dup(out.fileno()), "rb"), CHUNK)
            try:
                while (line := reader.readline().rstrip(b"\r\n")):
                    key, _, value = line.decode("latin-1").partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    else:
                        head.append((key.strip(), value.strip()))
                self.send_response(status)
                for key, value in head:
                    self.send_header(key, value)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                write = self.wfile.write
                while data := reader.read1(CHUNK):
                    write(b"%x\r\n%b\r\n" % (len(data), data))
                write(b"0\r\n\r\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                proc.kill()
            finally:
                reader.close()
                out.close()
                if feeder is not None:
                    feeder.join()
                if not body_read[-1]:
                    self.close_connection = True  # the rest of the body is still on the wire
                proc.wait()

    return CGIHandler


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    Server(("127.0.0.1", port), handler(root)).serve_forever()


if __name__ == "__main__":
    main()
