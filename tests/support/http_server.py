"""A recording HTTP server for the push tests.

Listens on 127.0.0.1 (--port, 0 for a free one; the port is printed on the first line of
stdout), over TLS with --cert and --key, and appends each request it answers to DIR/requests.jsonl as one JSON object:
{n, at, method, path, headers (lowercase names), body, answered}.

How it answers is read from DIR/script.json before each request: a list of answers, the
first of which is used and removed; when it is empty or absent, 201 with "{}". An answer is
{"status": 500, "headers": {...}, "body": "..."} or {"hang": SECONDS} (waits, then closes
without answering).
"""

import argparse
import json
import os
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LOCK = threading.Lock()


def next_answer(directory):
    script = os.path.join(directory, "script.json")
    with LOCK:
        try:
            with open(script) as f:
                answers = json.load(f)
        except (FileNotFoundError, json.JSONDecodeError):
            answers = []
        if not answers:
            return {"status": 201, "body": "{}"}
        answer = answers.pop(0)
        with open(script + ".tmp", "w") as f:
            json.dump(answers, f)
        os.replace(script + ".tmp", script)
        return answer


def record(directory, entry):
    path = os.path.join(directory, "requests.jsonl")
    with LOCK:
        try:
            with open(path) as f:
                entry["n"] = sum(1 for _ in f) + 1
        except FileNotFoundError:
            entry["n"] = 1
        with open(path, "a") as f:
            f.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        answer = next_answer(self.server.directory)
        entry = {
            "at": time.time(),
            "method": "POST",
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        if "hang" in answer:
            entry["answered"] = None
            record(self.server.directory, entry)
            time.sleep(answer["hang"])
            self.close_connection = True
            return
        entry["answered"] = answer["status"]
        record(self.server.directory, entry)
        payload = answer.get("body", "").encode()
        self.send_response(answer["status"])
        for name, value in answer.get("headers", {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format, *args):
        sys.stderr.write("%s\n" % (format % args))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--cert", help="serve HTTPS with this certificate (PEM)")
    parser.add_argument("--key")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    server.directory = args.dir
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
