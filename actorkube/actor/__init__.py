"""The actor runtime: trio actors exchanging msgpack messages, with supervision.

Everything public is re-exported here; the modules behind it are private.
"""

from ._actor import Actor as Actor
from ._actor import Overflow as Overflow
from ._actor import handler as handler
from ._asyncio import GuestSystem as GuestSystem
from ._asyncio import asyncio_actor_system as asyncio_actor_system
from ._cell import Reply as Reply
from ._codec import decode_message as decode_message
from ._codec import encode_message as encode_message
from ._codec import is_message as is_message
from ._codec import message as message
from ._codec import message_tag as message_tag
from ._codec import registered_tags as registered_tags
from ._errors import ActorError as ActorError
from ._errors import AskTimeout as AskTimeout
from ._errors import AuthenticationError as AuthenticationError
from ._errors import CodecError as CodecError
from ._errors import DecodeError as DecodeError
from ._errors import HandlerFailed as HandlerFailed
from ._errors import MailboxFull as MailboxFull
from ._errors import ProtocolError as ProtocolError
from ._errors import RestartIntensityExceeded as RestartIntensityExceeded
from ._errors import Undeliverable as Undeliverable
from ._messages import DeadLetter as DeadLetter
from ._messages import Terminated as Terminated
from ._ref import ActorRef as ActorRef
from ._ref import Address as Address
from ._supervision import Backoff as Backoff
from ._supervision import OneForAll as OneForAll
from ._supervision import OneForOne as OneForOne
from ._supervision import Restart as Restart
from ._supervision import RestForOne as RestForOne
from ._supervision import Strategy as Strategy
from ._system import ActorStats as ActorStats
from ._system import ActorSystem as ActorSystem
from ._system import DeadLetters as DeadLetters
from ._system import SystemStats as SystemStats
from ._system import WallClock as WallClock
from ._tcp import TcpTransport as TcpTransport
from ._tcp import serve_tcp as serve_tcp
from ._timers import SERVER_TIMER_SLACK as SERVER_TIMER_SLACK
from ._timers import Timers as Timers
