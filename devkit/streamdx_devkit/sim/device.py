"""``streamdx simulate ecg`` — a device simulator that streams ECG chunks to ingest.

Each simulated device streams one lead as int16 ADC chunks, either a synthetic record
(:func:`streamdx_devkit.sim.ecg.ecg_synthesize`, with ground truth) or a WFDB record
(``--record PATH/100``), over HTTP batches or a WebSocket:

* ``POST {ingest}/v1/streams/{stream_id}/ecg`` with ``Authorization: Bearer <api_key>`` and
  the JSON body ``{"seq", "fs", "t0", "gain", "baseline", "lead", "data"|"samples"}``;
  202 → ``{"status": "accepted"|"duplicate", "seq", "gap_before"}``.
* ``WS {ingest}/v1/streams/{stream_id}/ws`` — one text frame per chunk (same body), one JSON
  reply per frame: ``{"seq", "status": "accepted"|"duplicate"|"error", "detail", "retry_after"}``.

Delivery rules: chunks go out in ``seq`` order, one at a time, and a chunk is never skipped
(except on purpose: ``--gap-at S --gap-s N`` simulates a device that loses N seconds of data
from S s on — it sends nothing for that time and resumes with the ``seq`` the next chunk would
have had anyway, so ingest publishes it with ``gap_before`` = the number of chunks lost).
429/503 (HTTP) or an ``"error"`` reply with ``retry_after`` (WS) → wait ``Retry-After``
(capped at 60 s) and resend the *same* ``seq``; other 5xx, transport failures and dropped
WebSockets → exponential back-off (0.5 s · 2^k, ≤ 10 s) and resend. After ``max_retries``
resends of one chunk, or on any other 4xx / error reply, the stream stops and reports the
error. Every loop is bounded by the number of chunks × (``max_retries`` + 1).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import json
import math
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
import numpy as np
import numpy.typing as npt
from websockets.exceptions import WebSocketException

from streamdx.cli_args import non_negative_int
from streamdx.encoding import encode_i16
from streamdx_devkit.sim.ecg import DEFAULT_GAIN, SCENARIO_NAMES, SyntheticEcg, aami_class, ecg_synthesize

__all__ = [
    "MAX_CHUNK_SAMPLES",
    "AdcSignal",
    "IngestError",
    "StreamReport",
    "WsConnection",
    "build_parser",
    "create_device",
    "load_wfdb",
    "main",
    "run",
    "sim_start_time",
    "stream_ecg",
]

#: Largest chunk the ingest contract accepts (samples).
MAX_CHUNK_SAMPLES = 16_384
_MAX_RETRY_AFTER_S = 60.0
_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 10.0
_STREAM_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")

Transport = Literal["http", "ws"]
Encoding = Literal["data", "samples"]
Sleep = Callable[[float], Awaitable[None]]


class IngestError(RuntimeError):
    """A chunk could not be delivered (a 4xx, an error reply, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WsConnection(Protocol):
    """The part of a WebSocket client connection the simulator uses."""

    async def send(self, message: str) -> None: ...

    async def recv(self) -> str | bytes: ...


WsConnect = Callable[[str, dict[str, str]], AbstractAsyncContextManager[WsConnection]]


@dataclass(frozen=True, eq=False)
class AdcSignal:
    """One lead as int16 ADC counts (``mV = (adc - baseline) / gain``).

    Attributes
    ----------
    fs : float
        Sampling frequency (Hz).
    adc : numpy.ndarray
        int16 ADC counts.
    gain : float
        ADC counts per mV.
    baseline : int
        ADC count of 0 mV.
    lead : str or None
        Lead name (e.g. ``"MLII"``).
    """

    fs: float
    adc: npt.NDArray[np.int16]
    gain: float
    baseline: int = 0
    lead: str | None = None

    @classmethod
    def from_synthetic(cls, ecg: SyntheticEcg, gain: float = DEFAULT_GAIN, baseline: int = 0) -> AdcSignal:
        """Convert a synthetic record to ADC counts."""
        return cls(fs=ecg.fs, adc=ecg.to_adc(gain, baseline), gain=gain, baseline=baseline, lead=ecg.lead)


@dataclass
class StreamReport:
    """Outcome of streaming one signal.

    Attributes
    ----------
    stream_id : str
        Stream the chunks were sent to.
    transport : str
        ``"http"`` or ``"ws"``.
    chunks_total : int
        Chunks the signal was cut into.
    accepted, duplicates : int
        Chunks acknowledged as ``"accepted"`` / ``"duplicate"``.
    retries : int
        Resends of a chunk (same ``seq``).
    errors : int
        Failed attempts (error statuses, error replies, transport failures).
    gaps_reported : int
        Acknowledgements with ``gap_before > 0``.
    chunks_dropped : int
        Chunks deliberately not sent (a simulated data gap); not part of ``chunks_total``.
    samples_sent : int
        Samples in acknowledged chunks.
    elapsed_s : float
        Wall-clock time (s).
    error : str or None
        Why the stream stopped early, if it did.
    next_seq : int
        The first ``seq`` not acknowledged.
    """

    stream_id: str
    transport: str
    chunks_total: int
    accepted: int = 0
    duplicates: int = 0
    retries: int = 0
    errors: int = 0
    gaps_reported: int = 0
    chunks_dropped: int = 0
    samples_sent: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    next_seq: int = 0

    @property
    def ok(self) -> bool:
        """True when every chunk was acknowledged."""
        return self.error is None and self.accepted + self.duplicates == self.chunks_total

    @property
    def samples_per_s(self) -> float:
        """Acknowledged samples per wall-clock second."""
        return self.samples_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        """One human-readable line."""
        line = (
            f"{self.stream_id}: {self.accepted + self.duplicates}/{self.chunks_total} chunks "
            f"({self.accepted} accepted, {self.duplicates} duplicates), {self.retries} retries, "
            f"{self.errors} errors, {self.samples_sent} samples in {self.elapsed_s:.2f} s "
            f"({self.samples_per_s:.0f} samples/s)"
        )
        return line + (f" — STOPPED: {self.error}" if self.error else "")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "stream_id": self.stream_id,
            "transport": self.transport,
            "chunks_total": self.chunks_total,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "retries": self.retries,
            "errors": self.errors,
            "gaps_reported": self.gaps_reported,
            "chunks_dropped": self.chunks_dropped,
            "samples_sent": self.samples_sent,
            "elapsed_s": self.elapsed_s,
            "samples_per_s": self.samples_per_s,
            "error": self.error,
            "next_seq": self.next_seq,
        }


# --------------------------------------------------------------------------- helpers


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _retry_after_s(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _backoff_s(attempt: int) -> float:
    return float(min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2.0**attempt))


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    if isinstance(body, dict) and "detail" in body:
        return json.dumps(body["detail"])[:300] if not isinstance(body["detail"], str) else body["detail"][:300]
    return json.dumps(body)[:300]


def _ws_url(base: str, stream_id: str) -> str:
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    path = parts.path.rstrip("/") + f"/v1/streams/{quote(stream_id, safe=':')}/ws"
    return urlunsplit((scheme, parts.netloc, path, "", ""))


def _http_url(base: str, stream_id: str) -> str:
    return base.rstrip("/") + f"/v1/streams/{quote(stream_id, safe=':')}/ecg"


def _chunk_body(sig: AdcSignal, seq: int, start: int, stop: int, t0: datetime, encoding: Encoding) -> dict[str, Any]:
    body: dict[str, Any] = {
        "seq": seq,
        "fs": sig.fs,
        "t0": _iso(t0 + timedelta(seconds=start / sig.fs)),
        "gain": sig.gain,
        "baseline": sig.baseline,
        "lead": sig.lead,
    }
    chunk = sig.adc[start:stop]
    if encoding == "data":
        body["data"] = encode_i16(chunk)
    else:
        body["samples"] = [int(v) for v in chunk]
    return body


class _Chunks:
    """The chunks of a signal to send, built on demand (a day at 1 kHz is ~230 MB of JSON).

    Chunks whose first sample falls in the dropped span ``[drop_a, drop_b)`` (samples) are
    left out; the others keep the ``seq`` and ``t0`` of their place in the signal.
    """

    def __init__(
        self, sig: AdcSignal, n_chunk: int, start_seq: int, t0: datetime, encoding: Encoding,
        drop: tuple[int, int] = (0, 0),
    ) -> None:  # fmt: skip
        self.sig, self.n_chunk, self.start_seq, self.t0, self.encoding = sig, n_chunk, start_seq, t0, encoding
        n_all = -(-sig.adc.size // n_chunk)
        self.kept = [k for k in range(n_all) if not drop[0] <= k * n_chunk < drop[1]]
        self.dropped = n_all - len(self.kept)

    def __len__(self) -> int:
        return len(self.kept)

    def place(self, k: int) -> int:
        """Index of the ``k``-th chunk to send among all the chunks of the signal."""
        return self.kept[k]

    def __getitem__(self, k: int) -> tuple[dict[str, Any], int]:
        """Body of the ``k``-th chunk to send and its number of samples."""
        if not 0 <= k < len(self):
            raise IndexError(k)
        start = self.kept[k] * self.n_chunk
        stop = min(start + self.n_chunk, self.sig.adc.size)
        return _chunk_body(self.sig, self.start_seq + self.kept[k], start, stop, self.t0, self.encoding), stop - start


def _ack(report: StreamReport, reply: dict[str, Any], seq: int, n: int) -> bool:
    """Count an acknowledgement; False if ``reply`` is not one."""
    status = reply.get("status")
    if status not in ("accepted", "duplicate"):
        return False
    if reply.get("seq") not in (None, seq):
        raise IngestError(f"acknowledgement for seq {reply.get('seq')!r} while sending seq {seq}")
    if status == "accepted":
        report.accepted += 1
    else:
        report.duplicates += 1
    gap = reply.get("gap_before")
    if isinstance(gap, int) and gap > 0:
        report.gaps_reported += 1
    report.samples_sent += n
    report.next_seq = seq + 1
    return True


async def _post_chunk(
    client: httpx.AsyncClient,
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    report: StreamReport,
    *,
    max_retries: int,
    sleep: Sleep,
) -> dict[str, Any]:
    """POST one chunk, resending the same body on 429/5xx/transport errors (bounded)."""
    reason = ""
    for attempt in range(max_retries + 1):
        if attempt:
            report.retries += 1
        try:
            resp = await client.post(url, json=body, headers=headers)
        except httpx.TransportError as exc:
            report.errors += 1
            reason, delay = f"{type(exc).__name__}: {exc}", _backoff_s(attempt)
        else:
            if resp.status_code in (200, 201, 202):
                try:
                    reply = resp.json()
                except ValueError as exc:
                    raise IngestError(f"seq {body['seq']}: reply is not JSON", resp.status_code) from exc
                if not isinstance(reply, dict):
                    raise IngestError(f"seq {body['seq']}: reply is not a JSON object", resp.status_code)
                return reply
            report.errors += 1
            reason = f"HTTP {resp.status_code}: {_detail(resp)}"
            if resp.status_code != 429 and resp.status_code < 500:
                raise IngestError(f"seq {body['seq']}: {reason}", resp.status_code)
            after = _retry_after_s(resp.headers.get("Retry-After"))
            delay = after if after is not None else _backoff_s(attempt)
        if attempt < max_retries:
            await sleep(delay)
    raise IngestError(f"seq {body['seq']}: gave up after {max_retries} retries ({reason})")


@asynccontextmanager
async def _websockets_connect(url: str, headers: dict[str, str]) -> AsyncIterator[WsConnection]:
    from websockets.asyncio.client import connect

    async with connect(url, additional_headers=headers, proxy=None, open_timeout=10.0) as ws:
        yield ws


def _ws_handshake_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


async def _stream_ws(
    url: str,
    headers: dict[str, str],
    bodies: _Chunks,
    report: StreamReport,
    *,
    max_retries: int,
    sleep: Sleep,
    pace: Callable[[int], Awaitable[None]],
    ws_connect: WsConnect,
    timeout_s: float,
) -> None:
    """Send every chunk over one WebSocket, reconnecting (bounded) if it drops."""
    k = 0  # index of the next chunk to deliver
    attempts = 0  # failed attempts on chunk k
    while k < len(bodies):
        try:
            async with ws_connect(url, headers) as ws:
                while k < len(bodies):
                    body, n = bodies[k]
                    await pace(k)
                    await ws.send(json.dumps(body))
                    raw = await asyncio.wait_for(ws.recv(), timeout_s)
                    reply = json.loads(raw)
                    if not isinstance(reply, dict):
                        raise IngestError(f"seq {body['seq']}: reply is not a JSON object")
                    if _ack(report, reply, body["seq"], n):
                        k, attempts = k + 1, 0
                        continue
                    report.errors += 1
                    detail = reply.get("detail")
                    after = reply.get("retry_after")
                    if reply.get("status") != "error" or not isinstance(after, int | float):
                        raise IngestError(f"seq {body['seq']}: {reply.get('status')!r}: {detail}")
                    if attempts >= max_retries:
                        raise IngestError(f"seq {body['seq']}: gave up after {max_retries} retries ({detail})")
                    attempts += 1
                    report.retries += 1
                    await sleep(min(max(float(after), 0.0), _MAX_RETRY_AFTER_S))
        except (OSError, TimeoutError, ValueError, WebSocketException) as exc:  # dropped socket, bad frame
            status = _ws_handshake_status(exc)
            report.errors += 1
            if status is not None and 400 <= status < 500 and status != 429:
                raise IngestError(f"WebSocket handshake rejected: HTTP {status}", status) from exc
            if isinstance(exc, json.JSONDecodeError):
                raise IngestError(f"reply is not JSON: {exc}") from exc
            if attempts >= max_retries:
                raise IngestError(
                    f"seq {bodies[k][0]['seq']}: gave up after {max_retries} reconnects ({type(exc).__name__}: {exc})"
                ) from exc
            attempts += 1
            report.retries += 1
            await sleep(_backoff_s(attempts - 1))


# --------------------------------------------------------------------------- public API


async def create_device(client: httpx.AsyncClient, url: str, admin_token: str, device_id: str) -> str:
    """Register a device with ingest and return its API key.

    Parameters
    ----------
    client : httpx.AsyncClient
        HTTP client.
    url : str
        Ingest base URL, e.g. ``http://127.0.0.1:8000``.
    admin_token : str
        Admin bearer token.
    device_id : str
        Device identifier (``sim-0001``).

    Raises
    ------
    IngestError
        On any non-201 answer or a reply without ``api_key``.
    """
    resp = await client.post(
        url.rstrip("/") + "/v1/admin/devices",
        json={"device_id": device_id},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    if resp.status_code not in (200, 201):
        raise IngestError(f"creating device {device_id}: HTTP {resp.status_code}: {_detail(resp)}", resp.status_code)
    key = resp.json().get("api_key")
    if not isinstance(key, str) or not key:
        raise IngestError(f"creating device {device_id}: reply has no api_key")
    return key


class _SwitchedOff(Exception):
    """The ``stop`` event of :func:`stream_ecg` was set: no more chunks."""


async def stream_ecg(
    client: httpx.AsyncClient,
    url: str,
    stream_id: str,
    api_key: str,
    ecg: SyntheticEcg | AdcSignal,
    *,
    chunk_s: float = 1.0,
    speed: float = 0.0,
    transport: Transport = "http",
    t0: datetime | None = None,
    gain: float = DEFAULT_GAIN,
    baseline: int = 0,
    encoding: Encoding = "data",
    start_seq: int = 0,
    max_retries: int = 5,
    timeout_s: float = 30.0,
    sleep: Sleep = asyncio.sleep,
    ws_connect: WsConnect | None = None,
    gap: tuple[float, float] | None = None,
    stop: asyncio.Event | None = None,
) -> StreamReport:
    """Stream a signal to ingest in ``chunk_s`` chunks with consecutive ``seq`` numbers.

    Parameters
    ----------
    client : httpx.AsyncClient
        HTTP client (used for ``transport="http"``).
    url : str
        Ingest base URL.
    stream_id : str
        Stream identifier (the device id, or ``device_id + ":" + suffix``).
    api_key : str
        Device API key.
    ecg : SyntheticEcg or AdcSignal
        Signal to send; a :class:`SyntheticEcg` is converted with ``gain`` / ``baseline``.
    chunk_s : float
        Chunk length (s).
    speed : float
        1 = real time, 2 = twice as fast, 0 = as fast as the server acknowledges.
    transport : {"http", "ws"}
        HTTP batches or one WebSocket.
    t0 : datetime or None
        Time of the first sample (UTC); default: :func:`sim_start_time`. Chunk ``k`` carries
        ``t0 + first_sample / fs``.
    gain : float
        ADC counts per mV for a :class:`SyntheticEcg`.
    baseline : int
        ADC count of 0 mV for a :class:`SyntheticEcg`.
    encoding : {"data", "samples"}
        base64 little-endian int16 (``"data"``) or a JSON list of ints (``"samples"``).
    start_seq : int
        ``seq`` of the first chunk.
    max_retries : int
        Resends allowed per chunk before giving up.
    timeout_s : float
        Time (s) to wait for one WebSocket reply.
    sleep : callable
        ``await sleep(seconds)`` used for retry delays (injectable for tests).
    ws_connect : callable or None
        ``ws_connect(url, headers)`` → async context manager of a :class:`WsConnection`;
        default :mod:`websockets`.
    gap : (float, float) or None
        ``(at_s, length_s)``: simulate lost data — the chunks starting within
        ``[at_s, at_s + length_s)`` of the signal are not sent (at ``speed`` > 0 the device is
        silent for that time); the next chunk keeps its own ``seq``, so ingest marks it
        ``gap_before``. Counted in ``StreamReport.chunks_dropped``.
    stop : asyncio.Event or None
        When set, the device stops before its next chunk (a clean switch-off, not an error);
        the report counts what was sent until then.

    Returns
    -------
    StreamReport
        Counts; ``error`` is set when the stream stopped early (it never skips a chunk).
    """
    if chunk_s <= 0 or not math.isfinite(chunk_s):
        raise ValueError("chunk_s must be > 0")
    if speed < 0 or not math.isfinite(speed):
        raise ValueError("speed must be >= 0")
    if max_retries < 0:
        raise ValueError("max_retries must be >= 0")
    if not _STREAM_ID_RE.match(stream_id):
        raise ValueError(f"invalid stream_id {stream_id!r}")
    sig = AdcSignal.from_synthetic(ecg, gain, baseline) if isinstance(ecg, SyntheticEcg) else ecg
    n_chunk = max(1, round(chunk_s * sig.fs))
    if n_chunk > MAX_CHUNK_SAMPLES:
        raise ValueError(f"a chunk of {n_chunk} samples exceeds {MAX_CHUNK_SAMPLES}")
    drop = (0, 0)
    if gap is not None:
        at_s, length_s = gap
        if not (math.isfinite(at_s) and math.isfinite(length_s)) or at_s < 0 or length_s <= 0:
            raise ValueError("gap needs at_s >= 0 and length_s > 0")
        drop = (round(at_s * sig.fs), round((at_s + length_s) * sig.fs))
    t0 = sim_start_time(sig.adc.size / sig.fs, speed) if t0 is None else t0
    bodies = _Chunks(sig, n_chunk, start_seq, t0, encoding, drop)
    report = StreamReport(
        stream_id=stream_id, transport=transport, chunks_total=len(bodies), next_seq=start_seq,
        chunks_dropped=bodies.dropped,
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"}
    loop = asyncio.get_running_loop()
    started = loop.time()
    wall0 = time.perf_counter()

    async def pace(k: int) -> None:
        if speed > 0:
            delay = started + bodies.place(k) * n_chunk / sig.fs / speed - loop.time()
            if delay > 0:
                if stop is None:
                    await asyncio.sleep(delay)
                else:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=delay)
        if stop is not None and stop.is_set():
            raise _SwitchedOff

    try:
        if transport == "http":
            target = _http_url(url, stream_id)
            for k in range(len(bodies)):
                body, n = bodies[k]
                await pace(k)
                reply = await _post_chunk(client, target, headers, body, report, max_retries=max_retries, sleep=sleep)
                if not _ack(report, reply, body["seq"], n):
                    report.errors += 1
                    raise IngestError(f"seq {body['seq']}: unexpected reply {reply!r}"[:300])
        elif transport == "ws":
            await _stream_ws(
                _ws_url(url, stream_id),
                headers,
                bodies,
                report,
                max_retries=max_retries,
                sleep=sleep,
                pace=pace,
                ws_connect=ws_connect or _websockets_connect,
                timeout_s=timeout_s,
            )
        else:
            raise ValueError(f"unknown transport {transport!r}")
    except IngestError as exc:
        report.error = str(exc)
    except _SwitchedOff:
        pass
    report.elapsed_s = time.perf_counter() - wall0
    return report


# --------------------------------------------------------------------------- WFDB records

_RHYTHM_MAP = {"N": "N", "AFIB": "AFIB", "VT": "VT", "SBR": "BRADY"}


def load_wfdb(
    path: str, *, channel: int = 0, duration_s: float | None = None
) -> tuple[AdcSignal, dict[str, Any] | None]:
    """Read one channel of a WFDB record as ADC counts, plus its reference annotations.

    Parameters
    ----------
    path : str
        Record path without extension (``/data/mitdb/100``).
    channel : int
        Channel index.
    duration_s : float or None
        Read only the first ``duration_s`` seconds.

    Returns
    -------
    signal : AdcSignal
        The channel's stored ADC counts with the header's gain and baseline.
    truth : dict or None
        From the ``atr`` annotations when present: ``r_samples``, ``symbols``, ``aami`` (beat
        annotations only) and ``rhythms`` (from ``(AFIB``-style aux notes; ``(SBR`` → ``BRADY``,
        unknown labels kept without the parenthesis).
    """
    import wfdb

    from streamdx_dsp.evaluation.records import read_annotations, read_header, read_wfdb_file

    # a damaged or inconsistent file is a RecordError (a ValueError) naming the record
    folder, name = Path(path).parent, Path(path).name
    header = read_header(folder, name)
    fs = float(header.fs)
    sampto = header.sig_len
    if duration_s is not None:
        sampto = min(sampto, max(1, round(duration_s * fs)))
    rec = read_wfdb_file(folder, name, "signal",
                         lambda: wfdb.rdrecord(path, channels=[channel], physical=False, sampto=sampto))  # fmt: skip
    d_signal = rec.d_signal
    if d_signal is None:
        raise ValueError(f"{path}: no digital signal")
    adc = np.asarray(d_signal[:, 0])
    if adc.size and (adc.min() < -32768 or adc.max() > 32767):
        raise ValueError(f"{path}: samples do not fit int16")
    gain = float(rec.adc_gain[0])
    if gain <= 0:
        raise ValueError(f"{path}: channel {channel} has no ADC gain (uncalibrated)")
    sig = AdcSignal(
        fs=fs, adc=adc.astype(np.int16), gain=gain, baseline=int(rec.baseline[0]), lead=str(rec.sig_name[0])[:16]
    )
    truth: dict[str, Any] | None = None
    if Path(path + ".atr").exists():
        ann = read_annotations(folder, name, "atr", int(header.sig_len or adc.size))
        r: list[int] = []
        sym: list[str] = []
        marks: list[tuple[int, str]] = []
        aux_notes = ann.aux_note or [""] * len(ann.sample)
        for s, a, aux in zip(ann.sample, ann.symbol, aux_notes, strict=False):
            if s >= sampto:
                break
            if a in ("N", "L", "R", "e", "j", "A", "a", "J", "S", "V", "E", "F", "/", "f", "Q"):
                r.append(int(s))
                sym.append(a)
            label = aux.strip("\x00 ")
            if a == "+" and label.startswith("("):
                marks.append((int(s), _RHYTHM_MAP.get(label[1:], label[1:])))
        bounds = [m[0] for m in marks[1:]] + [adc.size]
        truth = {
            "fs": fs,
            "n_samples": int(adc.size),
            "record": path,
            "lead": sig.lead,
            "r_samples": r,
            "symbols": sym,
            "aami": [aami_class(s) for s in sym],
            "rhythms": [{"start": m[0], "end": b, "label": m[1]} for m, b in zip(marks, bounds, strict=True)],
        }
    return sig, truth


def sim_start_time(duration_s: float, speed: float) -> datetime:
    """Time of the first sample of a simulated stream: now when streaming in real time or
    slower; ``duration_s`` ago when faster (``speed`` 0 or > 1), so that no chunk claims a time
    in the future (ingest refuses a t0 ahead of its clock by more than ``MAX_CLOCK_SKEW_S``)."""
    now = datetime.now(UTC)
    return now if 0 < speed <= 1 else now - timedelta(seconds=duration_s)


# --------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamdx simulate ecg",
        description="Stream synthetic (ground-truth annotated) or WFDB ECG to the ingest service.",
    )
    p.add_argument("--ingest", default="http://127.0.0.1:8000", help="ingest base URL")
    auth = p.add_mutually_exclusive_group(required=True)
    auth.add_argument("--admin-token", help="admin token: register one device per stream")
    auth.add_argument("--key", help="API key of an existing device (needs --streams 1)")
    p.add_argument("--device", default="sim-0001", help="device id with --streams 1")
    p.add_argument("--device-prefix", default="sim", help="devices are PREFIX-0001 … with --streams > 1")
    p.add_argument("--stream-suffix", default=None, help="stream id = DEVICE:SUFFIX (default: DEVICE)")
    p.add_argument("--streams", type=int, default=1, help="number of simulated devices streaming at once")
    p.add_argument("--scenario", default="sinus", choices=SCENARIO_NAMES,
                   help="synthetic rhythm (mixed = a different one per stream; default: %(default)s)")
    p.add_argument("--record", action="append", default=None, help="WFDB record path (repeatable)")
    p.add_argument("--channel", type=int, default=0, help="WFDB channel")
    p.add_argument("--duration", type=float, default=None, help="seconds (default 60, or the whole record)")
    p.add_argument("--fs", type=float, default=250.0, help="synthetic sampling rate (Hz)")
    p.add_argument("--hr", type=float, default=70.0, help="synthetic mean heart rate (bpm)")
    p.add_argument("--gain", type=float, default=DEFAULT_GAIN, help="synthetic ADC counts per mV")
    p.add_argument("--chunk-s", type=float, default=1.0, help="chunk length (s)")
    p.add_argument("--speed", type=float, default=1.0, help="1 = real time, 0 = as fast as possible")
    p.add_argument("--transport", choices=("http", "ws"), default="http",
                   help="one HTTP POST per chunk, or one WebSocket per stream (default: %(default)s)")
    p.add_argument("--encoding", choices=("data", "samples"), default="data",
                   help="send samples as base64 int16 (data) or as a JSON list (samples)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="stream i uses seed + i")
    p.add_argument("--gap-at", type=float, default=None, metavar="S",
                   help="simulate lost data: send nothing from S seconds into the signal (needs --gap-s)")
    p.add_argument("--gap-s", type=float, default=None, metavar="N",
                   help="length of the simulated data gap (s); the device resumes with the seq the next "
                        "chunk would have had, so ingest marks it gap_before")
    p.add_argument("--max-retries", type=int, default=5, help="retries of a chunk refused with 429/503")
    p.add_argument("--timeout", type=float, default=30.0, help="HTTP / WebSocket timeout (s)")
    p.add_argument("--truth-out", type=Path, default=None, help="write ground truth JSON here")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def _check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if not 1 <= a.streams <= 10_000:
        p.error("--streams must be in [1, 10000]")
    if a.key is not None and a.streams != 1:
        p.error("--key works with a single device (--streams 1); use --admin-token for more")
    if urlsplit(a.ingest).scheme not in ("http", "https") or not urlsplit(a.ingest).netloc:
        p.error("--ingest must be an http(s) URL")
    if a.duration is not None and a.duration <= 0:
        p.error("--duration must be > 0")
    if a.chunk_s <= 0 or a.speed < 0 or a.max_retries < 0 or a.timeout <= 0:
        p.error("--chunk-s and --timeout must be > 0, --speed and --max-retries >= 0")
    if (a.gap_at is None) != (a.gap_s is None):
        p.error("--gap-at and --gap-s go together")
    if a.gap_at is not None and (a.gap_at < 0 or a.gap_s <= 0):
        p.error("--gap-at must be >= 0 and --gap-s > 0")


async def run(argv: Sequence[str], *, transport: httpx.AsyncBaseTransport | None = None) -> int:
    """Run the simulator CLI (``main`` without ``asyncio.run``; ``transport`` for tests).

    Returns
    -------
    int
        0 when every stream delivered every chunk, 1 otherwise, 2 on bad arguments.
    """
    p = build_parser()
    try:
        a = p.parse_args(list(argv))
        _check_args(p, a)
    except SystemExit as exc:
        return int(exc.code) if isinstance(exc.code, int) else 2

    devices = [a.device] if a.streams == 1 else [f"{a.device_prefix}-{i + 1:04d}" for i in range(a.streams)]
    stream_ids = [f"{d}:{a.stream_suffix}" if a.stream_suffix else d for d in devices]
    bad = [s for s in stream_ids if not _STREAM_ID_RE.match(s)]
    if bad:
        print(f"error: invalid stream id {bad[0]!r}", file=sys.stderr)
        return 2

    signals: list[AdcSignal] = []
    truths: list[dict[str, Any] | None] = []
    try:
        for i in range(a.streams):
            if a.record:
                sig, truth = load_wfdb(a.record[i % len(a.record)], channel=a.channel, duration_s=a.duration)
            else:
                ecg = ecg_synthesize(
                    60.0 if a.duration is None else a.duration,
                    a.fs,
                    seed=a.seed + i,
                    scenario=a.scenario,
                    heart_rate_bpm=a.hr,
                )
                sig, truth = AdcSignal.from_synthetic(ecg, a.gain), ecg.truth_dict()
            if not 125.0 <= sig.fs <= 1000.0:
                raise ValueError(f"fs {sig.fs} Hz is outside what ingest accepts (125–1000 Hz)")
            signals.append(sig)
            truths.append(truth)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    t0 = sim_start_time(max(sig.adc.size / sig.fs for sig in signals), a.speed)
    if a.truth_out is not None:
        out: dict[str, Any] = {"t0": _iso(t0), "streams": {}}
        for sid, sig, truth in zip(stream_ids, signals, truths, strict=True):
            out["streams"][sid] = {**(truth or {}), "gain": sig.gain, "baseline": sig.baseline, "t0": _iso(t0)}
        a.truth_out.parent.mkdir(parents=True, exist_ok=True)
        a.truth_out.write_text(json.dumps(out))

    async with httpx.AsyncClient(timeout=a.timeout, trust_env=False, transport=transport) as client:
        try:
            keys = (
                [a.key]
                if a.key is not None
                else [await create_device(client, a.ingest, a.admin_token, d) for d in devices]
            )
        except (IngestError, httpx.HTTPError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        reports = await asyncio.gather(
            *(
                stream_ecg(
                    client,
                    a.ingest,
                    sid,
                    key,
                    sig,
                    chunk_s=a.chunk_s,
                    speed=a.speed,
                    transport=a.transport,
                    t0=t0,
                    encoding=a.encoding,
                    max_retries=a.max_retries,
                    timeout_s=a.timeout,
                    gap=None if a.gap_at is None else (a.gap_at, a.gap_s),
                )
                for sid, key, sig in zip(stream_ids, keys, signals, strict=True)
            )
        )
    total_samples = sum(r.samples_sent for r in reports)
    wall = max((r.elapsed_s for r in reports), default=0.0)
    totals = {
        "streams": len(reports),
        "ok": sum(r.ok for r in reports),
        "chunks": sum(r.accepted + r.duplicates for r in reports),
        "duplicates": sum(r.duplicates for r in reports),
        "retries": sum(r.retries for r in reports),
        "errors": sum(r.errors for r in reports),
        "samples": total_samples,
        "samples_per_s": total_samples / wall if wall > 0 else 0.0,
    }
    if a.json:
        print(json.dumps({"streams": [r.as_dict() for r in reports], "total": totals}))
    else:
        for r in reports:
            print(r.summary())
        print(
            f"total: {totals['ok']}/{totals['streams']} streams complete, {totals['chunks']} chunks "
            f"({totals['duplicates']} duplicates), {totals['retries']} retries, {totals['errors']} errors, "
            f"{total_samples} samples at {totals['samples_per_s']:.0f} samples/s"
        )
    return 0 if all(r.ok for r in reports) else 1


def main(argv: Sequence[str]) -> int:
    """Entry point of ``streamdx simulate ecg`` (see ``--help``)."""
    try:
        return asyncio.run(run(argv))
    except KeyboardInterrupt:
        return 130
