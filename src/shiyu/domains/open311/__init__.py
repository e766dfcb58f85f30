"""Open311 GeoReport v2 开放311接口: an adapter over the work-items domain 工单.

Partners' apps, kiosks and city systems file citizen service requests through the one open
international standard (http://wiki.open311.org/GeoReport_v2) and follow them through
mySociety's ``servicerequestupdates`` extension; citizens do the same on a public page
(``pages``). Every request becomes a 12345 hotline work item through the items domain's own
intake, so numbering, routing, deadlines 时限, the timeline and the audit log apply as to any
other item. This package holds no lifecycle logic of its own.
"""
