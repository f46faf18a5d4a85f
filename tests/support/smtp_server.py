"""A real SMTP server for aftercare's tests: aiosmtpd (Debian's
python3-aiosmtpd), answering per recipient as a relay would, and keeping
every accepted message in a Maildir with the envelope sender as its
Return-Path, the way a delivering MTA writes it.

    /usr/bin/python3 tests/support/smtp_server.py PORT MAILDIR [CERT KEY USER PASS]

With CERT, KEY, USER and PASS it requires STARTTLS and then AUTH (PLAIN or
LOGIN) with that user and password, as a submission relay does.

How it answers, by the recipient's local part:
- `refused...`: 550 5.1.1 at RCPT (the address does not exist);
- `later...`: 451 4.3.0 at RCPT for the first two tries of that address,
  then accepted;
- `spam...`: 554 5.7.1 after DATA (the message refused, not the address);
- anything else: accepted.

Every RCPT is appended to MAILDIR/rcpt.log as `<address> <code>`, so a test
can count attempts. Prints `ready` once listening.
"""

import mailbox
import os
import signal
import sys
import threading

from aiosmtpd.controller import Controller


class Relay:
    def __init__(self, maildir):
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)
        self.box = mailbox.Maildir(maildir, create=False)
        self.log = os.path.join(maildir, "rcpt.log")
        self.tries = {}
        self.lock = threading.Lock()

    def note(self, address, code):
        with self.lock, open(self.log, "a") as f:
            f.write(f"{address} {code}\n")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("refused"):
            self.note(address, 550)
            return f"550 5.1.1 <{address}>: user unknown"
        if local.startswith("later"):
            with self.lock:
                n = self.tries.get(address, 0) + 1
                self.tries[address] = n
            if n <= 2:
                self.note(address, 451)
                return "451 4.3.0 try again later"
        self.note(address, 250)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        if any(a.split("@", 1)[0].lower().startswith("spam") for a in envelope.rcpt_tos):
            return "554 5.7.1 message refused as spam"
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode("utf-8")
        stored = b"Return-Path: <" + envelope.mail_from.encode() + b">\r\n" + raw
        with self.lock:
            key = self.box.add(stored)
        return f"250 2.0.0 OK queued as {key}"


def main():
    port, maildir = int(sys.argv[1]), sys.argv[2]
    secure = {}
    if len(sys.argv) == 7:
        import ssl

        from aiosmtpd.smtp import AuthResult

        cert, key, user, password = sys.argv[3:7]
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # Not handled: aiosmtpd answers a failure with 535.
            return AuthResult(success=ok, handled=False)

        secure = dict(
            tls_context=context,
            require_starttls=True,
            auth_required=True,
            auth_require_tls=True,
            authenticator=authenticator,
        )
    controller = Controller(
        Relay(maildir),
        hostname="127.0.0.1",
        port=port,
        data_size_limit=32 * 1024 * 1024,
        enable_SMTPUTF8=True,
        **secure,
    )
    controller.start()
    print("ready", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    main()
