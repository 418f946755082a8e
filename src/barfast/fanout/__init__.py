"""Many workers, one exact result: the coordinator, its workers and the messages between them.

plan.py splits a run into worker shares; spawn.py starts local workers (fork or exec); worker.py
is the worker's side; protocol.py the messages (msgpack over ZeroMQ); keys.py and admission.py
CURVE keys and who may join; coordinator.py drives one run over all of them.
"""
