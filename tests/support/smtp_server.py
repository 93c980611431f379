#!/usr/bin/env python3
"""A real SMTP server for the mail tests: aiosmtpd on 127.0.0.1, optionally with STARTTLS or
implicit TLS and AUTH, writing every message it accepts to a directory as JSON.

Prints `READY <port>` once listening. Each message becomes `<dir>/<seq>.json`, written
atomically, with `session` numbering the connection it came over, so a test can tell how many
connections a batch took. Sequence and session numbers continue from the files already in the
directory, so a restarted server does not overwrite what an earlier one received.
"""

import argparse
import asyncio
import email
import email.policy
import itertools
import json
import logging
import os
import ssl
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult


def make_cert(directory):
    """A CA and a server certificate for localhost and 127.0.0.1, as PEM files."""
    import trustme

    os.makedirs(directory, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    ca.cert_pem.write_to_path(os.path.join(directory, "ca.pem"))
    server.cert_chain_pems[0].write_to_path(os.path.join(directory, "cert.pem"))
    for extra in server.cert_chain_pems[1:]:
        extra.write_to_path(os.path.join(directory, "cert.pem"), append=True)
    server.private_key_pem.write_to_path(os.path.join(directory, "key.pem"))


def make_expired_cert(directory):
    """A self-signed certificate for localhost and 127.0.0.1 marked as a CA, as
    `openssl req -x509` makes them, that expired yesterday: `expired.pem`, `expired.key`."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(directory, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=30))
        .not_valid_after(now - datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    with open(os.path.join(directory, "expired.pem"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(directory, "expired.key"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def text_of(content):
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    if isinstance(content, str):
        return content.replace("\r\n", "\n")
    # A message/rfc822 part: its text as sent.
    return content.as_string()


def describe(raw):
    message = email.message_from_bytes(raw, policy=email.policy.default)
    headers = [[name, str(value)] for name, value in message.items()]
    parts = []
    for part in message.walk():
        if part.is_multipart():
            continue
        parts.append(
            {
                "content_type": part.get_content_type(),
                "filename": part.get_filename(),
                "content": text_of(part.get_content()),
            }
        )
    return headers, parts


def highest(directory, key):
    found = 0
    for name in os.listdir(directory):
        if not name.endswith(".json"):
            continue
        if key == "seq":
            found = max(found, int(name[: -len(".json")]))
        else:
            with open(os.path.join(directory, name)) as f:
                found = max(found, json.load(f)["session"])
    return found


class Recorder:
    def __init__(self, directory, args):
        self.directory = directory
        self.drop_after = args.drop_after
        self.refused = {address.lower() for address in args.refuse_rcpt}
        self.deferred = {address.lower() for address in args.defer_rcpt}
        self.refuse_message = args.refuse_message
        self.pause = args.pause
        self.sequence = itertools.count(highest(directory, "seq") + 1)
        self.sessions = itertools.count(highest(directory, "session") + 1)

    def session_number(self, session):
        if not hasattr(session, "number"):
            session.number = next(self.sessions)
        return session.number

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.lower() in self.refused:
            return f"550 5.1.1 <{address}>: Recipient address rejected"
        if address.lower() in self.deferred:
            # Once: the next attempt is accepted.
            self.deferred.discard(address.lower())
            return f"450 4.2.1 <{address}>: Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        session.messages = getattr(session, "messages", 0) + 1
        if self.drop_after is not None and session.messages > self.drop_after:
            # A connection lost mid-batch: no answer, no record.
            server.transport.abort()
            return "421 4.3.0 not reached: the connection is gone"
        if self.pause:
            await asyncio.sleep(self.pause)
        if self.refuse_message:
            return "554 5.7.1 Message refused by policy"
        raw = envelope.original_content or envelope.content
        headers, parts = describe(raw)
        record = {
            "session": self.session_number(session),
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "raw": raw.decode("utf-8", errors="replace"),
            "headers": headers,
            "parts": parts,
        }
        seq = next(self.sequence)
        final = os.path.join(self.directory, f"{seq}.json")
        partial = os.path.join(self.directory, f".{seq}.json.tmp")
        with open(partial, "w") as f:
            json.dump(record, f)
        os.replace(partial, final)
        return "250 Message accepted for delivery"


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        login = auth_data.login.decode() if isinstance(auth_data.login, bytes) else auth_data.login
        secret = auth_data.password
        if isinstance(secret, bytes):
            secret = secret.decode()
        return AuthResult(success=(login == user and secret == password), handled=False)

    return authenticate


def tls_context(cert, key):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def serve(args):
    os.makedirs(args.dir, exist_ok=True)
    recorder = Recorder(args.dir, args)
    context = tls_context(args.cert, args.key) if args.tls != "none" else None
    options = {"hostname": "moonbot-test-smtp"}
    if args.tls == "starttls":
        options.update(tls_context=context, require_starttls=True)
    if args.auth:
        user, _, password = args.auth.partition(":")
        options.update(
            authenticator=authenticator_for(user, password),
            auth_required=True,
            # Under implicit TLS the whole connection is encrypted, but aiosmtpd only knows
            # about STARTTLS, so it must not insist on it there.
            auth_require_tls=args.tls == "starttls",
        )
        if args.auth_mechanism:
            offered = {mechanism.upper() for mechanism in args.auth_mechanism}
            options.update(auth_exclude_mechanism={"LOGIN", "PLAIN"} - offered)
    else:
        options.update(auth_require_tls=False)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(recorder, loop=loop, **options),
        host="127.0.0.1",
        port=args.port,
        reuse_address=True,
        ssl=context if args.tls == "smtps" else None,
    )
    port = server.sockets[0].getsockname()[1]
    print(f"READY {port}", flush=True)
    await server.serve_forever()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir")
    parser.add_argument("--tls", choices=["none", "starttls", "smtps"], default="none")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--auth", help="USER:PASS, the only credentials accepted")
    parser.add_argument(
        "--auth-mechanism", action="append", default=[], help="offer only these (LOGIN, PLAIN)"
    )
    parser.add_argument("--refuse-rcpt", action="append", default=[], metavar="ADDRESS")
    parser.add_argument(
        "--defer-rcpt",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="answer 450 to this recipient once, then accept it",
    )
    parser.add_argument("--refuse-message", action="store_true", help="answer 554 to every DATA")
    parser.add_argument(
        "--pause", type=float, default=0, metavar="SECONDS", help="wait before answering DATA"
    )
    parser.add_argument(
        "--drop-after",
        type=int,
        metavar="N",
        help="close a connection instead of answering the DATA of its message N+1",
    )
    parser.add_argument("--make-cert", metavar="DIR")
    parser.add_argument("--make-expired-cert", metavar="DIR")
    args = parser.parse_args()

    if args.make_expired_cert:
        make_expired_cert(args.make_expired_cert)
        return

    if args.make_cert:
        make_cert(args.make_cert)
        if args.cert is None:
            args.cert = os.path.join(args.make_cert, "cert.pem")
            args.key = os.path.join(args.make_cert, "key.pem")
    if args.dir is None:
        if args.make_cert:
            return
        parser.error("--dir is required to serve")
    if args.tls != "none" and not (args.cert and args.key):
        parser.error("--tls needs --cert and --key (or --make-cert)")
    # Requiring AUTH without TLS is what the plain-text AUTH tests want.
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
