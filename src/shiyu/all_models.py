"""Imports every ORM model so ``Base.metadata`` is complete (Alembic, tests)."""

from shiyu.domains.analysis import models as analysis_models  # noqa: F401
from shiyu.domains.geo import models as geo_models  # noqa: F401
from shiyu.domains.items import models as items_models  # noqa: F401
from shiyu.domains.open311 import models as open311_models  # noqa: F401
from shiyu.kit import meta as kit_meta  # noqa: F401
from shiyu.kit.db import Base
from shiyu.platform.audit import models as audit_models  # noqa: F401
from shiyu.platform.identity import models as identity_models  # noqa: F401
from shiyu.platform.jobs import models as jobs_models  # noqa: F401
from shiyu.platform.units import models as units_models  # noqa: F401

metadata = Base.metadata
