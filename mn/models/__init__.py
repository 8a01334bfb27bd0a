"""The core's resource model. Importing this package registers its tables on Base.metadata (a plugin's
models register when mn.plugins loads them)."""

from mn.models.gc import GarbageCollector  # noqa: F401
from mn.models.identity import (  # noqa: F401
    Account,
    AccountResourceRef,
    Policy,
    Quota,
    QuotaUsage,
    Session,
    SharedResource,
    User,
    UserGroup,
    UserGroupPolicyRef,
    UserGroupUserRef,
    UserPolicyRef,
)
from mn.models.infra import Cluster, Host, Zone  # noqa: F401
from mn.models.network import (  # noqa: F401
    IpRange,
    L2Network,
    L2NetworkClusterRef,
    L3Network,
    L3NetworkDns,
    UsedIp,
)
from mn.models.offering import DiskOffering, InstanceOffering  # noqa: F401
from mn.models.storage import (  # noqa: F401
    BackupStorage,
    BackupStorageZoneRef,
    Image,
    ImageBackupStorageRef,
    PrimaryStorage,
    PrimaryStorageClusterRef,
)
from mn.models.system import ApiJob, GlobalConfig, GlobalConfigGeneration, ManagementNode  # noqa: F401
from mn.models.tag import SystemTag, UserTag  # noqa: F401
from mn.models.vm import VmInstance, VmNic, Volume  # noqa: F401
