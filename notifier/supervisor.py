"""uvicorn's supervisor for `serve --workers N`, with two changes a crowded machine needs.

1. **A worker that dies is replaced at once.** uvicorn asks each worker in turn whether it
   is alive (a ping over a pipe) and waits up to `timeout_worker_healthcheck` (30 s in
   `serve`, see `notifier.process`) for the answer. A worker killed while being asked
   never answers, and the supervisor holds the other end of the pipe too, so the wait
   ran its full 30 s: with 100,000 sockets, the replacement of a worker killed with -9
   started 30.4 s later (`python -m bench.scale`), while its 17,528 users waited. Here
   the wait also ends when the process does (its sentinel), and workers already dead
   are replaced before the living are asked.
2. **A worker holding all the streams it may stops accepting** (`notifier.listening`):
   the worker's server is uvicorn's, with its listening servers handed to `LISTENING`.

The rest is uvicorn's: this module copies the few lines of its `Multiprocess` that
start a worker, to start this one instead (uvicorn has no hook for it; `pyproject.toml`
bounds the version these lines were taken from).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import pickle
import socket
from multiprocessing.connection import wait

import uvicorn
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from notifier.listening import NOT_ACCEPTING, UNUSED, Acceptors, Listening

logger = logging.getLogger("uvicorn.error")

LISTENING = Listening()
"""This worker process's listening servers (`notifier.process.worker_app` wires its
admission here; a process serving alone never attaches them, so nothing closes)."""


class Server(uvicorn.Server):
    """uvicorn's server, whose listening servers `LISTENING` may close and reopen."""

    def __init__(self, config: uvicorn.Config, acceptors: Acceptors, slot: int | None) -> None:
        super().__init__(config)
        self.acceptors, self.slot = acceptors, slot

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if sockets is None or self.slot is None or self.should_exit:
            return
        config, loop = self.config, asyncio.get_running_loop()

        def create_protocol(_loop: asyncio.AbstractEventLoop | None = None) -> asyncio.Protocol:
            return config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=_loop,
            )

        async def reopen(sock: socket.socket) -> asyncio.Server:
            return await loop.create_server(
                create_protocol, sock=sock, ssl=config.ssl, backlog=config.backlog
            )

        LISTENING.attach(self.servers, reopen, self.acceptors, self.slot)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await LISTENING.detach()
        await super().shutdown(sockets=sockets)


class Worker(Process):
    """uvicorn's worker, serving with `Server` from its slot of `Acceptors`."""

    def __init__(
        self,
        config: uvicorn.Config,
        sockets: list[socket.socket],
        acceptors: Acceptors,
        slot: int | None,
    ) -> None:
        super().__init__(config, sockets)
        self.acceptors, self.slot = acceptors, slot
        if slot is not None:
            acceptors.mark(slot, NOT_ACCEPTING)  # until it listens

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            self._server = Server(self.config, self.acceptors, self.slot)
        return self._server

    def _healthcheck(self, timeout: float) -> bool | None:
        """uvicorn's ping, which also ends when the worker's process does."""
        try:
            self.parent_conn.send(b"ping")
            ready = wait([self.parent_conn, self.process.sentinel], timeout)
            if self.parent_conn in ready:
                started: bool = self.parent_conn.recv()
                return started
            return None
        except (OSError, EOFError, pickle.UnpicklingError):
            return None


class Supervisor(Multiprocess):
    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        # Room for workers added by SIGTTIN, and for a restart's new and old at once.
        size = 2 * config.workers + 64
        self.acceptors = Acceptors(size, multiprocessing.get_context("spawn"))

    def _worker(self) -> Worker:
        """A new worker, started, in a slot no other holds (past them all: no slot, and
        then it never stops accepting)."""
        held = {getattr(p, "slot", None) for p in self.processes}
        slot = next((i for i in range(self.acceptors.size) if i not in held), None)
        process = Worker(self.config, self.sockets, self.acceptors, slot)
        process.start()
        return process

    def _forget(self, process: Process) -> None:
        """A worker gone: its slot no longer says it accepts."""
        slot = getattr(process, "slot", None)
        if slot is not None:
            self.acceptors.mark(slot, UNUSED)

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.processes.append(self._worker())

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        # The dead first (False sorts first), without waiting on the living's answers.
        for idx in sorted(
            range(len(self.processes)), key=lambda i: self.processes[i].process.is_alive()
        ):
            process = self.processes[idx]
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                continue
            process.kill()  # hung: kill it
            process.join()
            self._forget(process)
            if process.exitcode == STARTUP_FAILURE:
                # Broken before serving (app, TLS, bind): every restart would fail the same.
                logger.error(
                    f"Child process [{process.pid}] failed to start, stopping the parent process."
                )
                self.should_exit.set()
                return
            if self.should_exit.is_set():
                return
            logger.info(f"Child process [{process.pid}] died")
            self.processes[idx] = self._worker()

    def restart_all(self) -> None:
        """SIGHUP: each worker replaced by a new one, which serves before the old stops."""
        for idx, old_process in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new_process = self._worker()
            if not new_process.wait_until_ready(
                self.config.timeout_worker_healthcheck, self.should_exit
            ):
                new_process.kill()
                new_process.join()
                self._forget(new_process)
                if not self.should_exit.is_set():
                    logger.error(
                        f"New child process [{new_process.pid}] was not ready in time; "
                        f"keeping worker [{old_process.pid}] and aborting the restart."
                    )
                return
            old_process.terminate()
            old_process.join()
            self._forget(old_process)
            self.processes[idx] = new_process

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self._worker())
