"""A minimal Faust app for the smoke test: relays every message from one topic to another.

Run as `python tests/smoke/faust_relay.py worker`; topics and broker come from the environment.
It proves Faust + aiokafka work against the local broker version.
"""

import os

import faust

app = faust.App(
    os.environ["RELAY_APP_ID"],
    broker=f"kafka://{os.environ['FLEETGATE_BOOTSTRAP_SERVERS']}",
    web_enabled=False,
    datadir=os.environ["RELAY_DATADIR"],
    topic_allow_declare=False,
    topic_disable_leader=True,
)
source = app.topic(os.environ["RELAY_IN"], value_serializer="raw", key_serializer="raw")
sink = app.topic(os.environ["RELAY_OUT"], value_serializer="raw", key_serializer="raw")


@app.agent(source)
async def relay(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        await sink.send(key=key, value=value.upper())


if __name__ == "__main__":
    app.main()
