"""The bare baseline: the same web stack (FastAPI + uvicorn, uvloop, httptools, one worker) with a
POST endpoint that parses nothing and returns a constant."""

from fastapi import FastAPI

app = FastAPI()
CONSTANT = {"request_id": "00000000-0000-0000-0000-000000000000", "status": "received"}


@app.post("/api/v1/requests", status_code=201)
async def submit() -> dict:
    return CONSTANT
