"""A protocol-faithful Angel One SmartAPI for paper trading and tests.

The server is plain asyncio/aiohttp and runs without Django:
``python -m simulator --port 8600``, or ``simulator.testing.start_simulator()`` in tests.
The package is also a Django app so that ``manage.py run_simulator`` and
``manage.py chaos`` exist; nothing here imports Django at module level.
"""
