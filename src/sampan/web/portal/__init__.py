"""The verification portal (issue 17): vendors register, describe their FL platform, get it qualified and evaluated.

`tables` (its own tables on the store's engine), `accounts` (applicants, reviewers, admins: argon2id, email
verification, sessions, throttling), `service` (`Portal`: projects, questionnaire, qualification, evaluations, report
downloads, full-report releases; every action checked by role and ownership and written to the store's signed
audit log under the chain "portal"), `claims` (a vendor's claims against the measured verdicts).
"""

from sampan.web.portal.accounts import CompanyInfo, PortalAccounts, PortalPrincipal
from sampan.web.portal.claims import ClaimCheck, compare_claims
from sampan.web.portal.service import Portal

__all__ = ["ClaimCheck", "CompanyInfo", "Portal", "PortalAccounts", "PortalPrincipal", "compare_claims"]
