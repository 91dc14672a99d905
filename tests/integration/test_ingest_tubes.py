"""ESR tube registration and frame upload on the real broker and Redis."""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from streamdx.schemas import EsrFrameV1
from tests.conftest import StackInfo
from tests.integration.kafka_reading import read_messages
from tests.integration.test_ingest import client, ingest, new_device  # noqa: F401 - fixtures

pytestmark = pytest.mark.integration


def frame(w: int = 120, h: int = 320, boundary: int = 100, ext: str = ".jpg") -> bytes:
    img = np.full((h, w, 3), (90, 200, 235), np.uint8)  # plasma (BGR, yellowish)
    img[boundary:] = (30, 30, 150)  # red cells
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


async def test_tube_frames_published_once_and_bad_frames_refused(
    client: httpx.AsyncClient, stack: StackInfo  # noqa: F811
) -> None:
    device, auth = await new_device(client)
    tube = f"{device}:t1"
    r = await client.post("/v1/tubes", json={"tube_id": tube, "age": 67, "sex": "F"}, headers=auth)
    assert r.status_code == 201, r.text
    again = await client.post("/v1/tubes", json={"tube_id": tube, "age": 67, "sex": "F"}, headers=auth)
    assert again.status_code == 200
    other_data = await client.post("/v1/tubes", json={"tube_id": tube, "age": 30, "sex": "F"}, headers=auth)
    assert other_data.status_code == 409
    url = f"/v1/tubes/{tube}/frames"

    async def post(data: bytes, minute: int, name: str = "f.jpg") -> httpx.Response:
        return await client.post(url, files={"image": (name, data)}, data={"minute": str(minute)}, headers=auth)

    r = await post(frame(), 0)
    assert r.status_code == 202, r.text
    assert (await post(frame(boundary=101), 1)).status_code == 202
    assert (await post(frame(boundary=101, ext=".png"), 2, "f.png")).status_code == 202
    r = await post(frame(), 1)  # the same minute again
    assert r.status_code == 409 and "already" in r.json()["detail"]
    r = await post(b"definitely not an image", 3)
    assert r.status_code == 422 and "image" in r.json()["detail"]
    r = await post(b"\xff\xd8\xff" + b"\x00" * 100, 3)  # JPEG magic, broken body
    assert r.status_code == 422
    r = await post(frame(w=200), 3)
    assert r.status_code == 422 and "px" in r.json()["detail"]
    r = await client.post(f"/v1/tubes/{device}:nope/frames", files={"image": ("f.jpg", frame())},
                          data={"minute": "0"}, headers=auth)
    assert r.status_code == 404
    r = await client.post(url, files={"image": ("f.jpg", frame())}, data={"minute": "500"}, headers=auth)
    assert r.status_code == 422
    _, other_auth = await new_device(client)
    r = await client.post(url, files={"image": ("f.jpg", frame())}, data={"minute": "4"}, headers=other_auth)
    assert r.status_code == 403
    msgs = await read_messages(stack.kafka_bootstrap, EsrFrameV1, tube)
    assert [m.minute for m in msgs] == [0, 1, 2]
    assert msgs[0].age == 67 and msgs[0].sex == "F" and msgs[2].media_type == "image/png"
