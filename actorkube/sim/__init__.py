"""The deterministic simulated network: hosts, faulty links, crashes, seeds, traces.

Everything public is re-exported here; the modules behind it are private. See
docs/simulation.md for how to write a fault-injection test.
"""

from ._errors import DeterminismUnavailable as DeterminismUnavailable
from ._errors import ScenarioError as ScenarioError
from ._errors import SimError as SimError
from ._faults import Faults as Faults
from ._network import DEFAULT_EPOCH as DEFAULT_EPOCH
from ._network import SimNetwork as SimNetwork
from ._run import SimResult as SimResult
from ._run import simulate as simulate
from ._scheduling import seeded_scheduling as seeded_scheduling
from ._stepped import Background as Background
from ._stepped import SteppedSimulation as SteppedSimulation
from ._trace import Trace as Trace
from ._trace import TraceEvent as TraceEvent
