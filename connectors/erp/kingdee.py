"""Kingdee 金蝶云星空 (K/3 Cloud) WebAPI writer: each posting becomes a voucher (``GL_VOUCHER``).

What it relies on, from Kingdee's published WebAPI (the ``*.common.kdsvc`` service stubs):

- ``AuthService.ValidateUser``: ``{acctID, username, password, lcid}``, answered with
  ``LoginResultType`` (1: logged in) and a session cookie the later calls carry; a call whose
  session was lost answers ``MsgCode`` 1, and the writer logs in again once.
- ``DynamicFormService.Save`` / ``BatchSave``: ``{"formid": "GL_VOUCHER", "data": {"Model": …,
  "IsAutoSubmitAndAudit": true}}`` (BatchSave: a list of models), answered with
  ``Result.ResponseStatus``: ``IsSuccess``, ``Errors`` (``FieldName``, ``Message``, ``DIndex``)
  and ``SuccessEntitys`` (``Id``, ``Number``, ``DIndex``): the writer reads each item's outcome
  by its ``DIndex``; the voucher's ``Number`` is the ERP document number.
- ``DynamicFormService.ExecuteBillQuery``: ``{"data": {"FormId", "FieldKeys", "FilterString"}}``,
  answered with one list of values per row: the idempotency lookup, by a business key.

A voucher has no external reference of its own: the business key is a header field the
implementer adds in BOS (default ``F_ERPB_ExternalRef``, set "unique"), filled with the posting
id by the template (``connectors/erp/templates/kingdee_gl_voucher.json``). Before saving, the
writer looks the batch's keys up; an item refused because its key exists (a retry after a lost
answer) is looked up and answered as already booked. A reversal posting (negative amounts)
becomes a red voucher the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.erp.base import Booking, book_one
from connectors.erp.errors import ErpError, PermanentErpError, RetryableErpError
from connectors.erp.rest import TemplateGateway, call_gateway, json_answer, render
from erpbridge.model import Posting
from erpbridge.tls import check_ca_file

TEMPLATES = Path(__file__).parent / "templates"
SERVICE = "Kingdee.BOS.WebApi.ServicesStub"
LOGIN = f"{SERVICE}.AuthService.ValidateUser.common.kdsvc"
SAVE = f"{SERVICE}.DynamicFormService.Save.common.kdsvc"
BATCH_SAVE = f"{SERVICE}.DynamicFormService.BatchSave.common.kdsvc"
QUERY = f"{SERVICE}.DynamicFormService.ExecuteBillQuery.common.kdsvc"
_SESSION_LOST = 1  # ResponseStatus.MsgCode: the session is gone, log in again


class KingdeeSettings(BaseSettings):
    """``ERPBRIDGE_KINGDEE_*``: the 云星空 server, its data centre (账套) and login."""

    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_KINGDEE_", frozen=True,
                                      extra="ignore")  # fmt: skip

    base_url: str = Field("http://127.0.0.1:8071/k3cloud/", pattern=r"^https?://.*/$")
    acct_id: str = ""  # 数据中心 ID
    user: str = "Administrator"
    password: SecretStr = SecretStr("")
    lcid: int = 2052  # 简体中文
    form_id: str = "GL_VOUCHER"
    business_key_field: str = "F_ERPB_ExternalRef"
    number_field: str = "FVOUCHERGROUPNO"  # read back by the lookup
    auto_submit_and_audit: bool = True
    batch_save: bool = True  # BatchSave for a batch of postings, else one Save each
    template_file: Path = TEMPLATES / "kingdee_gl_voucher.json"
    timeout_s: float = Field(30.0, gt=0)
    # the CA that signed an https gateway's certificate (empty: the system's trust store)
    ca_file: Annotated[str, AfterValidator(check_ca_file)] = ""


class KingdeeWriter(TemplateGateway):
    name = "kingdee"

    def __init__(self, config: KingdeeSettings, http: httpx.Client | None = None) -> None:
        super().__init__(config.template_file, config.base_url, config.timeout_s, http,
                         config.ca_file)  # fmt: skip
        self._config = config
        self._logged_in = False

    def book(self, posting: Posting) -> Booking:
        return book_one(self, posting)

    def book_many(self, postings: Sequence[Posting]) -> list[Booking | ErpError]:
        """Look the keys up, save the rest (BatchSave: one request), read each item's outcome."""
        known = self.lookup_many([p.posting_id for p in postings])
        outcomes: dict[str, Booking | ErpError] = {
            p.posting_id: self._booking(p, known[p.posting_id], True)
            for p in postings if p.posting_id in known}  # fmt: skip
        fresh = [p for p in postings if p.posting_id not in known]
        if fresh:
            saved = self._save(fresh)
            refused = [p for p in fresh if isinstance(saved[p.posting_id], ErpError)]
            there = self.lookup_many([p.posting_id for p in refused]) if refused else {}
            for posting in fresh:
                result = saved[posting.posting_id]
                if posting.posting_id in there:  # saved before (a lost answer): not twice
                    outcomes[posting.posting_id] = self._booking(
                        posting, there[posting.posting_id], True)  # fmt: skip
                elif isinstance(result, ErpError):
                    outcomes[posting.posting_id] = result
                else:
                    outcomes[posting.posting_id] = self._booking(posting, result, False)
        return [outcomes[p.posting_id] for p in postings]

    def lookup_many(self, references: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The vouchers with these business keys: {key: {"Id", "Number"}}."""
        if not references:
            return {}
        key, config = self._config.business_key_field, self._config
        quoted = ",".join("'" + ref.replace("'", "''") + "'" for ref in references)
        query = {"FormId": config.form_id, "FieldKeys": f"FVOUCHERID,{config.number_field},{key}",
                 "FilterString": f"{key} in ({quoted})", "TopRowCount": 0, "Limit": 0}  # fmt: skip
        rows = self._call(QUERY, {"data": query})
        if isinstance(rows, dict) or (rows and isinstance(rows[0], list) and rows[0]
                                       and isinstance(rows[0][0], dict)):  # fmt: skip
            raise self._failure(_status(rows), "ExecuteBillQuery")
        return {str(row[2]): {"Id": row[0], "Number": row[1]} for row in rows}

    # -- internals -------------------------------------------------------------------------
    def _save(self, postings: Sequence[Posting]) -> dict[str, dict[str, Any] | ErpError]:
        models = [render(self._template, p) for p in postings]
        batch = self._config.batch_save and len(postings) > 1
        data = {"Model": models if batch else models[0],
                "IsAutoSubmitAndAudit": self._config.auto_submit_and_audit}  # fmt: skip
        answer = self._call(BATCH_SAVE if batch else SAVE,
                            {"formid": self._config.form_id, "data": data})  # fmt: skip
        status = _status(answer)
        if status is None:
            raise PermanentErpError(f"kingdee: the answer has no ResponseStatus: {answer!r:.300}")
        by_index: dict[int, dict[str, Any] | ErpError] = {}
        for entity in status.get("SuccessEntitys") or []:
            by_index[int(entity.get("DIndex") or 0)] = entity
        general = []
        for error in status.get("Errors") or []:
            text = f"kingdee: {error.get('FieldName') or 'voucher'}: {error.get('Message')}"
            if error.get("DIndex") is None and batch:
                general.append(text)
            else:
                index = int(error.get("DIndex") or 0)
                found = by_index.get(index)
                by_index[index] = PermanentErpError(
                    text if not isinstance(found, ErpError) else f"{found}; {text}")  # fmt: skip
        results: dict[str, dict[str, Any] | ErpError] = {}
        for index, posting in enumerate(postings):
            result = by_index.get(index)
            if result is None:
                why = "; ".join(general) or "no outcome for this item in the answer"
                result = PermanentErpError(why) if general else RetryableErpError(
                    f"kingdee: {why}")  # fmt: skip
            results[posting.posting_id] = result
        return results

    def _call(self, path: str, body: dict[str, Any]) -> Any:
        """POST to a service stub, logged in (again, once, if the session was lost)."""
        if not self._logged_in:
            self._login()
        answer = json_answer(call_gateway(self._http, self.name, "POST", path, json=body))
        status = _status(answer)
        if status is not None and status.get("MsgCode") == _SESSION_LOST:
            self._login()
            answer = json_answer(call_gateway(self._http, self.name, "POST", path, json=body))
        return answer

    def _login(self) -> None:
        config = self._config
        body = {"acctID": config.acct_id, "username": config.user,
                "password": config.password.get_secret_value(), "lcid": config.lcid}  # fmt: skip
        answer = json_answer(call_gateway(self._http, self.name, "POST", LOGIN, json=body))
        if answer.get("LoginResultType") != 1:  # a wrong login: retried, and the breaker opens
            raise RetryableErpError(f"kingdee: login refused: {answer.get('Message')}")
        self._logged_in = True

    def _failure(self, status: dict[str, Any] | None, what: str) -> ErpError:
        errors = "; ".join(str(e.get("Message")) for e in (status or {}).get("Errors") or [])
        return RetryableErpError(f"kingdee: {what} failed: {errors or status}")

    def _booking(self, posting: Posting, voucher: dict[str, Any], already: bool) -> Booking:
        return Booking(
            reference=posting.posting_id,
            document_id=str(voucher["Id"]),
            number=None if voucher.get("Number") is None else str(voucher["Number"]),
            state="audited" if self._config.auto_submit_and_audit else "saved",
            total=posting.money(posting.total_minor),
            already_booked=already,
            voucher=None if voucher.get("Number") is None else str(voucher["Number"]),
        )


def _status(answer: Any) -> dict[str, Any] | None:
    """``Result.ResponseStatus`` of an answer (an ExecuteBillQuery error comes as
    ``[[{"Result": …}]]``), or None."""
    while isinstance(answer, list) and answer:
        answer = answer[0]
    if not isinstance(answer, dict):
        return None
    status = (answer.get("Result") or {}).get("ResponseStatus")
    return status if isinstance(status, dict) else None
