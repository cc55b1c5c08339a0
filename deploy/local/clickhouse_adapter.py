#!/usr/bin/env python3
"""ClickHouse HTTP interface in front of an embedded ClickHouse engine (chdb), for development
and tests on machines without a ClickHouse server. Production uses a real ClickHouse server.

Serves on --listen (default 127.0.0.1:8123):
  GET /ping                       -> "Ok."
  GET|POST /?query=SQL[&default_format=F][&database=D][&decompress=1][&<setting>=<value>...]
      the SQL is the `query` parameter followed by the body (or the body alone);
      `INSERT INTO t [(cols)] FORMAT F` with rows in the (possibly chunked, possibly
      ClickHouse-LZ4-framed) body is run as `INSERT ... FROM INFILE '<tmp>' SETTINGS ... FORMAT F`.
Errors: HTTP 500, the ClickHouse message as body, `X-ClickHouse-Exception-Code` header.
One query at a time (chdb sessions are not concurrent).
"""
import argparse
import os
import re
import struct
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

import lz4.block
from chdb import session as chdb_session

# Parameters that are part of the HTTP protocol, not query settings.
PROTOCOL_PARAMS = {
    "query", "database", "default_format", "decompress", "compress", "user", "password",
    "session_id", "session_timeout", "session_check", "query_id", "quota_key",
    "wait_end_of_query", "buffer_size", "enable_http_compression",
}
INSERT_RE = re.compile(r"^\s*(INSERT\s+INTO\s+.+?)\s+FORMAT\s+(\w+)\s*;?\s*$", re.I | re.S)
CODE_RE = re.compile(r"Code:\s*(\d+)")
SETTING_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def decompress_blocks(data: bytes) -> bytes:
    """Decodes ClickHouse's compressed-block framing (checksum, method, sizes, payload)."""
    out = bytearray()
    pos = 0
    while pos < len(data):
        if len(data) - pos < 25:
            raise ValueError("truncated compressed block header")
        method = data[pos + 16]
        compressed_size, uncompressed_size = struct.unpack_from("<II", data, pos + 17)
        payload = data[pos + 25: pos + 16 + compressed_size]
        if len(payload) != compressed_size - 9:
            raise ValueError("truncated compressed block")
        if method == 0x82:
            out += lz4.block.decompress(payload, uncompressed_size=uncompressed_size)
        elif method == 0x02:
            out += payload
        else:
            raise ValueError(f"unsupported compression method 0x{method:02x}")
        pos += 16 + compressed_size
    return bytes(out)


def quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    def __init__(self, data_dir: str):
        self.session = chdb_session.Session(data_dir)
        self.lock = threading.Lock()
        self.tmp_dir = os.path.join(data_dir, "adapter-tmp")
        os.makedirs(self.tmp_dir, exist_ok=True)

    def run(self, sql: str, fmt: str, database: str | None) -> bytes:
        with self.lock:
            self.session.query(f"USE {database}" if database else "USE default")
            result = self.session.query(sql, fmt)
            return result.bytes() if result is not None else b""

    def insert(self, head: str, fmt: str, rows: bytes, settings: dict, database: str | None) -> None:
        fd, path = tempfile.mkstemp(dir=self.tmp_dir, suffix=".bin")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(rows)
            sql = f"{head} FROM INFILE {quote(path)}"
            if settings:
                sql += " SETTINGS " + ", ".join(f"{k}={quote(v)}" for k, v in settings.items())
            sql += f" FORMAT {fmt}"
            self.run(sql, "TabSeparated", database)
        finally:
            os.unlink(path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers on a kept-alive connection: +40 ms per query.
    disable_nagle_algorithm = True
    engine: Engine = None  # set in main

    def log_message(self, fmt, *args):  # quiet by default
        if os.environ.get("ADAPTER_VERBOSE"):
            sys.stderr.write("adapter: " + (fmt % args) + "\n")

    def read_body(self) -> bytes:
        """Reads the whole request body; raises on a truncated one (a client that died mid-way
        must not get a partial insert, as with a real ClickHouse server)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                line = self.rfile.readline()
                if not line:
                    raise ConnectionError("truncated chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while True:
                        trailer = self.rfile.readline()
                        if not trailer:
                            raise ConnectionError("truncated chunked body")
                        if trailer in (b"\r\n", b"\n"):
                            return bytes(out)
                chunk = self.rfile.read(size)
                if len(chunk) != size:
                    raise ConnectionError("truncated chunked body")
                out += chunk
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise ConnectionError("truncated body")
        return body

    def reply(self, status: int, body: bytes, extra: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def fail(self, message: str):
        m = CODE_RE.search(message)
        code = m.group(1) if m else "1000"
        self.reply(500, message.encode() + b"\n", {"X-ClickHouse-Exception-Code": code})

    def do_GET(self):
        self.handle_query(b"")

    def do_POST(self):
        try:
            body = self.read_body()
        except (ConnectionError, ValueError) as e:
            self.close_connection = True
            return self.reply(400, f"{e}\n".encode(), {"X-ClickHouse-Exception-Code": "33"})
        self.handle_query(body)

    def handle_query(self, body: bytes):
        url = urlsplit(self.path)
        if url.path in ("/ping", "/ping/"):
            return self.reply(200, b"Ok.\n")
        if url.path not in ("/", ""):
            return self.reply(404, b"not found\n")
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        settings = {k: v for k, v in params.items()
                    if k not in PROTOCOL_PARAMS and not k.startswith("param_")
                    and SETTING_NAME_RE.match(k)}
        database = params.get("database") or None
        fmt = params.get("default_format") or "TabSeparated"
        query = params.get("query", "")
        try:
            if params.get("decompress") == "1" and body:
                body = decompress_blocks(body)
            insert = INSERT_RE.match(query) if query else None
            if insert:
                self.engine.insert(insert.group(1), insert.group(2), body, settings, database)
                return self.reply(200, b"")
            sql = (query + "\n" + body.decode()) if query and body else (query or body.decode())
            if not sql.strip():
                return self.reply(400, b"Empty query\n", {"X-ClickHouse-Exception-Code": "62"})
            out = self.engine.run(sql, fmt, database)
            return self.reply(200, out)
        except Exception as e:  # the engine's message is the answer, as ClickHouse does
            return self.fail(str(e))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:8123")
    ap.add_argument("--data", required=True, help="directory for the engine's tables")
    args = ap.parse_args()
    host, port = args.listen.rsplit(":", 1)
    Handler.engine = Engine(args.data)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    print(f"clickhouse adapter on http://{host}:{port} (data {args.data})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
