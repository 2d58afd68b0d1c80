"""uvicorn's HTTP protocol, answering a request it cannot parse (a malformed header, a
Content-Length of "abc") with ptcli's JSON error rather than uvicorn's plain text."""

from __future__ import annotations

import json

from uvicorn.protocols.http.h11_impl import H11Protocol


class JsonErrorsH11Protocol(H11Protocol):
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
