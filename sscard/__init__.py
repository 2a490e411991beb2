"""sscard: smart-card middleware for a city's social security card system.

Layers (docs/architecture.md): transport → apdu/protocol → card session →
services; ``sscard.cli`` on top, ``sscard.applets`` (the emulated card) below.
"""

__version__ = "0.1.0"
