"""Yonyou 用友 U8 OpenAPI writer: each posting becomes a voucher (凭证), one request each.

What it relies on, from the U8 OpenAPI documentation (api.yonyouup.com, U8 V12.0 and later):

- ``system/token`` (``from_account``, ``app_key``, ``app_secret``) gives the token every call
  carries in its query, with ``from_account``, ``to_account`` and ``app_key``;
- ``voucher_ex/add`` adds a voucher whose entries are kept in their natural order. Its query
  carries ``biz_id``, the upstream id the platform keeps one-to-one with the ERP's key (here the
  posting id: the idempotency key), and ``sync=1`` (added before the answer). The body's
  ``voucher`` has the header (``voucher_type``, ``fiscal_year``, ``accounting_period``, ``date``,
  ``enter``, ``attachment_number``), ``voucher_making_system`` ``CDM`` with ``reserve2``, the
  external business number (the posting id again), and its ``entry`` list (``abstract``,
  ``account_code``, ``currency``, ``natural_debit_currency`` / ``natural_credit_currency``, and
  the auxiliary dimensions per line);
- ``voucherdetails/batch_get`` lists vouchers by ``coutno_id`` (the external number): the lookup.

Every answer carries ``errcode`` (``"0"``: done) and ``errmsg``. The template is
``connectors/erp/templates/yonyou_u8_voucher.json``. A reversal posting (negative amounts)
becomes a red voucher the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
from pydantic import AfterValidator, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.erp.base import Booking, book_each
from connectors.erp.errors import ErpError, PermanentErpError, RetryableErpError
from connectors.erp.rest import TemplateGateway, call_gateway, json_answer, render
from erpbridge.model import Posting
from erpbridge.tls import check_ca_file

TEMPLATES = Path(__file__).parent / "templates"


class YonyouSettings(BaseSettings):
    """``ERPBRIDGE_YONYOU_*``: the OpenAPI platform, this application and the target account."""

    model_config = SettingsConfigDict(env_prefix="ERPBRIDGE_YONYOU_", frozen=True,
                                      extra="ignore")  # fmt: skip

    base_url: str = Field("https://api.yonyouup.com/", pattern=r"^https?://.*/$")
    from_account: str = ""  # 调用方 id
    to_account: str = ""  # 提供方 id (the company's U8)
    app_key: str = ""
    app_secret: SecretStr = SecretStr("")
    ds_sequence: int | None = None  # 数据源序号; unset: the application's first
    template_file: Path = TEMPLATES / "yonyou_u8_voucher.json"
    # the errcodes meaning "the token is no longer valid": fetch a new one and ask again once
    token_errcodes: frozenset[str] = frozenset({"20001", "20002"})
    timeout_s: float = Field(30.0, gt=0)
    # the CA that signed an https gateway's certificate (empty: the system's trust store)
    ca_file: Annotated[str, AfterValidator(check_ca_file)] = ""


class YonyouWriter(TemplateGateway):
    name = "yonyou"

    def __init__(self, config: YonyouSettings, http: httpx.Client | None = None) -> None:
        super().__init__(config.template_file, config.base_url, config.timeout_s, http,
                         config.ca_file)  # fmt: skip
        self._config = config
        self._token: str | None = None

    def book_many(self, postings: Sequence[Posting]) -> list[Booking | ErpError]:
        return book_each(self, postings)  # the platform adds one voucher a request

    def book(self, posting: Posting) -> Booking:
        found = self.lookup(posting.posting_id)
        if found is not None:
            return self._booking(posting, found, already=True)
        answer = self._call("POST", "api/voucher_ex/add", {"biz_id": posting.posting_id,
                                                            "sync": 1},
                            json=render(self._template, posting))  # fmt: skip
        return self._booking(posting, answer, already=False)

    def lookup(self, reference: str) -> dict[str, Any] | None:
        """The voucher whose external business number is ``reference``, or None."""
        answer = self._call("GET", "api/voucherdetails/batch_get", {"coutno_id": reference})
        rows = answer.get("voucherdetails") or []
        return {"id": rows[0].get("i_id"), "voucher_no": rows[0].get("ino_id")} if rows else None

    def _call(self, method: str, path: str, params: dict[str, Any], **kwargs: Any) -> Any:
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._fetch_token()
            query = {**self._identity(), "token": self._token, **params}
            answer = json_answer(call_gateway(self._http, self.name, method, path,
                                              params=query, **kwargs))  # fmt: skip
            code = str(answer.get("errcode"))
            if code == "0":
                return answer
            if code in self._config.token_errcodes and attempt == 1:
                self._token = None
                continue
            text = f"yonyou: {method} {path} answered errcode {code}: {answer.get('errmsg')}"
            raise (RetryableErpError if code in self._config.token_errcodes
                   else PermanentErpError)(text[:500])  # fmt: skip
        raise AssertionError("unreachable")

    def _identity(self) -> dict[str, Any]:
        config = self._config
        found: dict[str, Any] = {
            "from_account": config.from_account,
            "to_account": config.to_account,
            "app_key": config.app_key,
        }
        if config.ds_sequence is not None:
            found["ds_sequence"] = config.ds_sequence
        return found

    def _fetch_token(self) -> str:
        config = self._config
        answer = json_answer(call_gateway(
            self._http, self.name, "GET", "system/token",
            params={"from_account": config.from_account, "app_key": config.app_key,
                    "app_secret": config.app_secret.get_secret_value()}))  # fmt: skip
        token = (answer.get("token") or {}).get("id") if str(answer.get("errcode")) == "0" else None
        if not token:  # a wrong key or secret: retried, and the breaker opens
            raise RetryableErpError(f"yonyou: no token: errcode {answer.get('errcode')}: "
                                    f"{answer.get('errmsg')}")  # fmt: skip
        return str(token)

    def _booking(self, posting: Posting, answer: dict[str, Any], already: bool) -> Booking:
        if answer.get("id") is None:
            raise PermanentErpError(f"yonyou: the answer has no voucher id: {answer!r:.300}")
        number = answer.get("voucher_no")
        return Booking(reference=posting.posting_id, document_id=str(answer["id"]),
                       number=None if number is None else str(number), state="saved",
                       total=posting.money(posting.total_minor), already_booked=already,
                       voucher=None if number is None else str(number))  # fmt: skip
