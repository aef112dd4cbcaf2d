"""actorkube's API server: Kubernetes objects on etcd (see docs/apiserver.md).

Everything public is re-exported here; the modules behind it are private.
"""

from ._authn import Authenticator as Authenticator
from ._authn import ServiceAccountTokens as ServiceAccountTokens
from ._authn import new_signing_key as new_signing_key
from ._authn import parse_token_file as parse_token_file
from ._builtin import builtin_registry as builtin_registry
from ._errors import ApiError as ApiError
from ._messages import ApiRequest as ApiRequest
from ._messages import ApiResponse as ApiResponse
from ._messages import StopWatch as StopWatch
from ._messages import WatchEvent as WatchEvent
from ._quantity import InvalidQuantity as InvalidQuantity
from ._quantity import Quantity as Quantity
from ._rbac import Attributes as Attributes
from ._rbac import RBACAuthorizer as RBACAuthorizer
from ._rbac import UserInfo as UserInfo
from ._registry import Registry as Registry
from ._registry import ResourceType as ResourceType
from ._selectors import FieldSelector as FieldSelector
from ._selectors import InvalidSelector as InvalidSelector
from ._selectors import Selector as Selector
from ._start import ApiServerHandle as ApiServerHandle
from ._start import start_apiserver as start_apiserver
from ._validation import FieldError as FieldError
