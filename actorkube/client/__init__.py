"""actorkube's API client, informers and work queue (see docs/apiserver.md).

Everything public is re-exported here; the modules behind it are private.
"""

from ._workqueue import BucketRateLimiter as BucketRateLimiter
from ._workqueue import ItemExponentialFailureRateLimiter as ItemExponentialFailureRateLimiter
from ._workqueue import MaxOfRateLimiter as MaxOfRateLimiter
from ._workqueue import RateLimitingQueue as RateLimitingQueue
from ._workqueue import ShutDown as ShutDown
from ._workqueue import WorkQueue as WorkQueue
from ._workqueue import default_controller_rate_limiter as default_controller_rate_limiter
