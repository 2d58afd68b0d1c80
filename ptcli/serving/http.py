"""uvicorn's HTTP protocol, guarded: a request it cannot parse (a malformed header, a
Content-Length of "abc") gets ptcli's JSON error rather than uvicorn's plain text; a client
that is slower than ``header_timeout_s`` to send a request's headers (a slowloris, dripping a
byte at a time, which resets uvicorn's own keep-alive timer with every byte) gets a 408 and
the connection closed; uvicorn's own log lines are JSON like the server's."""

from __future__ import annotations

import json
import logging

from uvicorn.protocols.http.h11_impl import H11Protocol

#: Seconds a client has to send a request's headers, from its connection or its last answer.
HEADER_TIMEOUT_S = 10.0
#: Most header fields a request may have (a browser sends about 20).
MAX_HEADERS = 100


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


class JsonErrorsH11Protocol(H11Protocol):
    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._header_deadline = None
        self._await_headers()

    def _await_headers(self) -> None:
        self._stop_waiting()
        self._header_deadline = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _stop_waiting(self) -> None:
        if getattr(self, "_header_deadline", None) is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        import h11

        self._header_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self.conn.trailing_data[0]:  # a request begun and never finished: say why
                self.transport.write(_raw_response(408, "Request Timeout", "the request's headers did not arrive within "
                                                   f"{self.header_timeout_s:g} s"))
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        import h11

        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are in: the request's own deadline applies now
            self._stop_waiting()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request on this connection, if any

    def connection_lost(self, exc) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        import h11

        body = json.dumps({"error": f"malformed HTTP request: {msg}"}).encode()
        event = h11.Response(status_code=400, reason=b"Bad Request", headers=[
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")])
        try:
            self.transport.write(self.conn.send(event))
            self.transport.write(self.conn.send(h11.Data(data=body)))
            self.transport.write(self.conn.send(h11.EndOfMessage()))
        except h11.LocalProtocolError:  # the connection is past answering: just close it
            pass
        self.transport.close()


def guarded_protocol(header_timeout_s: float) -> type:
    """The protocol class with this server's header timeout."""
    return type("GuardedH11Protocol", (JsonErrorsH11Protocol,), {"header_timeout_s": header_timeout_s})


class JsonLogFormatter(logging.Formatter):
    """uvicorn's own lines ("Invalid HTTP request received.") as the server's JSON lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = {"event": "http", "level": record.levelname.lower(), "message": record.getMessage()}
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info).strip().splitlines()[-1]
        return json.dumps(line)


#: uvicorn's logging, every line JSON on stderr.
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "ptcli.serving.http.JsonLogFormatter"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}},
    "loggers": {name: {"handlers": ["stderr"], "level": "WARNING", "propagate": False}
                for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")},
}
