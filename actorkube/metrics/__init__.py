"""The resource metrics pipeline: kubelets' resource metrics, scraped by the metrics
server, served by the API server as metrics.k8s.io/v1beta1 (see docs/metrics.md).

Everything public is re-exported here; the modules behind it are private.
"""

from actorkube.apiserver._metricsapi import ContainerMetrics as ContainerMetrics
from actorkube.apiserver._metricsapi import MetricsAnswer as MetricsAnswer
from actorkube.apiserver._metricsapi import MetricsQuery as MetricsQuery
from actorkube.apiserver._metricsapi import NodeMetrics as NodeMetrics
from actorkube.apiserver._metricsapi import PodMetrics as PodMetrics
from actorkube.apiserver._metricsapi import Usage as Usage

from ._messages import GetResourceMetrics as GetResourceMetrics
from ._messages import ResourceMetrics as ResourceMetrics
from ._messages import ResourceMetricsError as ResourceMetricsError
from ._server import METRIC_RESOLUTION as METRIC_RESOLUTION
from ._server import MetricsServer as MetricsServer
from ._store import MetricsStore as MetricsStore
