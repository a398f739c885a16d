"""Generation events, from the thread that generates to the request waiting for them.

A web process keeps a mailbox per event loop (`inference.relay.mailbox`). Each websocket
connection, and each /v1 request that runs a local model, opens an inbox in it; the
generation's job carries the inbox's address. Where the model runs, `RelaySender` sends each
event (a gathered hop of tokens, a heartbeat, the end) to that address:
- in the same process (the embedded default's thread pool), straight onto the inbox's loop,
  without crossing Redis;
- from a Celery worker, as one Redis PUBLISH on the mailbox's channel, which the mailbox
  reads on its one subscription and sorts into its inboxes.
One command per hop, sent from the generating thread itself (no event loop between), and
read in the web process without a thread hop. The channel layer (about ten Redis commands a
message, and a database sweep per message in the consumer) is left to rare control messages.

A reader that stops taking its events (a client that stopped reading its socket) never
slows the sender: its inbox holds up to `INBOX_MAX_TOKENS`, then the generation filling it
is stopped (its cancel flag) and its reader told so when it comes back. If the mailbox's
subscription fails, every inbox is told its events may be lost.
"""

from inference.relay.inbox import INBOX_MAX_TOKENS, LOST, OVERFLOWED, Inbox
from inference.relay.mailbox import relay_inbox_open
from inference.relay.sender import EventSender, ReaderGone, RelaySender

__all__ = [
    "INBOX_MAX_TOKENS",
    "LOST",
    "OVERFLOWED",
    "EventSender",
    "Inbox",
    "ReaderGone",
    "RelaySender",
    "relay_inbox_open",
]
