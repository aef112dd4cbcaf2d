"""actorkube's API client, informers and work queue (see docs/apiserver.md).

Everything public is re-exported here; the modules behind it are private.
"""

from ._client import ApiClient as ApiClient
from ._client import ApiServers as ApiServers
from ._client import WatchStream as WatchStream
from ._events import EventRecorder as EventRecorder
from ._informer import Informer as Informer
from ._informer import InformerFactory as InformerFactory
from ._informer import object_key as object_key
from ._workqueue import BucketRateLimiter as BucketRateLimiter
from ._workqueue import ItemExponentialFailureRateLimiter as ItemExponentialFailureRateLimiter
from ._workqueue import MaxOfRateLimiter as MaxOfRateLimiter
from ._workqueue import RateLimitingQueue as RateLimitingQueue
from ._workqueue import ShutDown as ShutDown
from ._workqueue import WorkQueue as WorkQueue
from ._workqueue import default_controller_rate_limiter as default_controller_rate_limiter
