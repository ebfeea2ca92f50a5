#!/usr/bin/env python3
"""Waits until a KRaft cluster that scripts/kafka-up.sh started is usable, asking the brokers over
Kafka's own wire protocol (the standard library only: no client to install).

    ready.py --brokers N [--timeout SECONDS] [--pid PID]... [--owner PID] HOST:PORT...

Usable means what a client needs, not only a listening socket (a KRaft broker binds its port long
before it serves requests):
  1. every HOST:PORT answers a Metadata request naming all N brokers: the controller quorum has a
     leader, and every broker registered with it, was unfenced and caught up with the metadata log;
  2. one of them finds a group coordinator: __consumer_offsets exists (created here if it is not),
     so consumer groups work, even if a broker is killed before any client asked for a group.

Exits 0 once both hold. Exits 1, saying what it last saw, when SECONDS pass, when a --pid (a
broker's JVM) exits, or when the --owner process exits.
"""

import argparse
import os
import socket
import struct
import sys
import time

METADATA, FIND_COORDINATOR = 3, 10
# Non-flexible versions every Kafka 4.x broker serves (4.0 dropped only much older ones).
METADATA_VERSION, FIND_COORDINATOR_VERSION = 8, 1
COORDINATOR_NOT_AVAILABLE = 15


class Reader:
    """Reads the big-endian fields of a response body in order."""

    def __init__(self, data):
        self.data, self.at = data, 0

    def take(self, fmt):
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self):
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.at : self.at + length].decode()
        self.at += length
        return value


def string(value):
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


def call(address, api_key, version, body, timeout=2.0):
    """One request on a fresh connection; returns a Reader on the response body."""
    host, port = address.rsplit(":", 1)
    header = struct.pack(">hhi", api_key, version, 1) + string("knactor-ready")
    request = header + body
    with socket.create_connection((host, int(port)), timeout=timeout) as connection:
        connection.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", receive(connection, 4))[0]
        response = Reader(receive(connection, size))
    if response.take(">i") != 1:
        raise OSError("a response to another request")
    return response


def receive(connection, size):
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


def brokers_known_to(address):
    """The node ids of the brokers the broker at address lists (alive and unfenced)."""
    # No topics (an empty array, not null), no auto-creation, no authorized operations.
    body = struct.pack(">i", 0) + b"\x00\x00\x00"
    response = call(address, METADATA, METADATA_VERSION, body)
    response.take(">i")  # throttle_time_ms
    ids = []
    for _ in range(response.take(">i")):
        ids.append(response.take(">i"))
        response.string()  # host
        response.take(">i")  # port
        response.string()  # rack
    return sorted(ids)


def coordinator_found(address):
    """Whether the broker at address finds a coordinator for a group (key type 0)."""
    body = string("knactor-ready") + b"\x00"
    response = call(address, FIND_COORDINATOR, FIND_COORDINATOR_VERSION, body)
    response.take(">i")  # throttle_time_ms
    error = response.take(">h")
    if error == 0:
        return True, "found"
    if error == COORDINATOR_NOT_AVAILABLE:
        return False, "no group coordinator yet (__consumer_offsets is being created)"
    return False, f"FindCoordinator error {error}: {response.string()}"


def running(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def main():
    parser = argparse.ArgumentParser(description="Waits until a KRaft cluster is usable.")
    parser.add_argument("--brokers", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--pid", type=int, action="append", default=[])
    parser.add_argument("--owner", type=int)
    parser.add_argument("addresses", nargs="+")
    args = parser.parse_args()

    expected = list(range(1, args.brokers + 1))
    deadline = time.monotonic() + args.timeout
    seen = "nothing yet"
    while True:
        for pid in args.pid:
            if not running(pid):
                sys.exit(f"ready.py: broker process {pid} exited")
        if args.owner and not running(args.owner):
            sys.exit(f"ready.py: owner process {args.owner} exited")
        try:
            for address in args.addresses:
                ids = brokers_known_to(address)
                if ids != expected:
                    raise OSError(f"{address} lists brokers {ids}, not {expected}")
            found, seen = coordinator_found(args.addresses[0])
            if found:
                return
        except (OSError, struct.error) as error:
            seen = str(error) or type(error).__name__
        if time.monotonic() > deadline:
            sys.exit(f"ready.py: not usable after {args.timeout:.0f} s: {seen}")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
