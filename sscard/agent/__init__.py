"""The local card service (``sscard agent``; docs/agent.md).

Business systems at a service point (Java, C#, a browser page) call the national
terminal interface (``iReadCardBas``, ``iVerifyPIN``, ``iChangePIN``,
``iReloadPIN``; docs/card.md, "The session") as JSON over HTTP and WebSocket on the
loopback address; kiosks run the agent's own page. Layers inside:

* :mod:`~sscard.agent.answers` — the JSON answer of a call: national code,
  localized message, data;
* :mod:`~sscard.agent.reader` — the one door to the reader: one caller at a
  time, a clear "busy" answer, card inserted / removed events;
* :mod:`~sscard.agent.service` — the national operations on the card in it;
* :mod:`~sscard.agent.guard` — loopback, origins, the installation's API token,
  operator sessions, the PIN rate limit, the request log (no bodies);
* :mod:`~sscard.agent.app` — the Starlette application (HTTP and WebSocket);
* :mod:`~sscard.agent.kiosk_web` — the kiosk page and its channel.

The agent never imports the CLI; ``sscard agent`` (``sscard.cli.agent_cmd``) starts it.
"""
