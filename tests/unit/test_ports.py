import random
import socket

from serve_app.local.ports import PORT_RANGE, free_port, is_free


def test_free_ports_avoid_the_ephemeral_range_and_are_bindable():
    for _ in range(20):
        port = free_port()
        assert PORT_RANGE[0] <= port <= PORT_RANGE[1] < 32768
        assert is_free(port)


def test_a_listening_port_is_not_free():
    with socket.socket() as server:
        server.bind(("0.0.0.0", 0))
        server.listen()
        assert not is_free(server.getsockname()[1])


def test_busy_draws_are_skipped():
    rng = random.Random(7)
    first = free_port(random.Random(7))
    with socket.socket() as server:
        server.bind(("0.0.0.0", first))
        server.listen()
        assert free_port(rng) != first
