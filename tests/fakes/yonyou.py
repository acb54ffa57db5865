"""A stand-in for Yonyou 用友 U8 OpenAPI, checking requests against the documented fields and
answering in the documented shape (``errcode`` / ``errmsg``; see :mod:`connectors.erp.yonyou`).

- ``system/token`` checks from_account, app_key and app_secret and answers ``token.id``;
- ``api/voucher_ex/add`` checks the query (from_account, to_account, app_key, a live token,
  ``biz_id`` and ``sync``) and the voucher: its type, date, period, ``voucher_making_system``
  CDM with ``reserve2``, and each entry's known account, one side non-zero, and the auxiliary
  dimensions the account requires (expense accounts ``dept_id``, the payable ``personnel_id``);
  debits must equal credits. A ``biz_id`` seen before answers the voucher it made (the platform
  keeps biz_id one-to-one with the ERP key); a ``reserve2`` seen before under another biz_id is
  refused;
- ``api/voucherdetails/batch_get?coutno_id=`` lists a voucher's entries by external number.

``expire_tokens()`` makes every token given so far invalid (errcode 20001);
``lose_next_answers`` adds the voucher but answers HTTP 504.
"""

from __future__ import annotations

import datetime
import threading
import uuid
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.json_server import Answer, serve

# account -> the auxiliary dimension it requires (辅助核算), or None
ACCOUNTS = {"5.2.2": "dept_id", "5.1.3": "dept_id", "660201": "dept_id", "22210101": None,
            "2241": "personnel_id"}  # fmt: skip


@dataclass
class Yonyou:
    from_account: str = "erpbridge_isv"
    to_account: str = "demo_u8"
    app_key: str = "opa3f1e2d3c4b5a6978"
    app_secret: str = "u8-secret-2026"
    vouchers: dict[str, dict[str, Any]] = field(default_factory=dict)  # reserve2 -> voucher
    by_biz_id: dict[str, str] = field(default_factory=dict)  # biz_id -> reserve2
    tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    lose_next_answers: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def serve(self) -> tuple[ThreadingHTTPServer, str]:
        server, url = serve(self.handle)
        return server, f"{url}/"

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    def handle(self, method: str, path: str, headers: dict[str, str], body: Any) -> Answer:
        url = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self.lock:
            self.calls.append(url.path)
        if url.path == "/":
            return 200, {"status": "up"}, {}
        if url.path == "/system/token":
            return 200, self._token(query), {}
        problem = self._identity(query)
        if problem:
            return 200, problem, {}
        if url.path == "/api/voucherdetails/batch_get" and method == "GET":
            with self.lock:
                voucher = self.vouchers.get(query.get("coutno_id", ""))
            rows = [] if voucher is None else [
                {"i_id": voucher["id"], "ino_id": voucher["voucher_no"], "inid": n,
                 "code": e["account_code"], "digest": e["abstract"]}
                for n, e in enumerate(voucher["entry"], 1)]  # fmt: skip
            return 200, {"errcode": "0", "errmsg": "", "voucherdetails": rows}, {}
        if url.path == "/api/voucher_ex/add" and method == "POST":
            answer = self._add(query, body)
            with self.lock:
                if self.lose_next_answers and answer["errcode"] == "0":
                    self.lose_next_answers -= 1
                    return 504, {"error": "gateway timeout (the answer was lost)"}, {}
            return 200, answer, {}
        return 404, {"errcode": "40004", "errmsg": f"no api {url.path}"}, {}

    def _token(self, query: dict[str, str]) -> dict[str, Any]:
        if (query.get("from_account"), query.get("app_key"), query.get("app_secret")) != (
                self.from_account, self.app_key, self.app_secret):  # fmt: skip
            return {"errcode": "30001", "errmsg": "app_key 或 app_secret 错误"}
        token = uuid.uuid4().hex
        with self.lock:
            self.tokens.add(token)
        return {"errcode": "0", "errmsg": "", "token": {"id": token, "expiresIn": 7200}}

    def _identity(self, query: dict[str, str]) -> dict[str, Any] | None:
        if (query.get("from_account"), query.get("to_account"), query.get("app_key")) != (
                self.from_account, self.to_account, self.app_key):  # fmt: skip
            return {"errcode": "30002", "errmsg": "调用方、提供方或应用编码错误"}
        with self.lock:
            if query.get("token") not in self.tokens:
                return {"errcode": "20001", "errmsg": "token 无效或已过期"}
        return None

    def _add(self, query: dict[str, str], body: Any) -> dict[str, Any]:
        biz_id = query.get("biz_id")
        if not biz_id or "tradeid" in query:
            return {"errcode": "30010", "errmsg": "biz_id 与 tradeid 必须且只能传入一个"}
        if query.get("sync") != "1":
            return {"errcode": "30011", "errmsg": "本接口仅测试同步新增 sync=1"}
        voucher = (body or {}).get("voucher") if isinstance(body, dict) else None
        problems = _check(voucher)
        if problems:
            return {"errcode": "30020", "errmsg": "；".join(problems)}
        assert isinstance(voucher, dict)
        with self.lock:
            if biz_id in self.by_biz_id:  # the same upstream id: the voucher it made
                made = self.vouchers[self.by_biz_id[biz_id]]
                return {"errcode": "0", "errmsg": "", "id": made["id"],
                        "voucher_no": made["voucher_no"]}  # fmt: skip
            if voucher["reserve2"] in self.vouchers:
                taken = voucher["reserve2"]
                return {"errcode": "30021", "errmsg": f"外部凭证业务号 {taken} 已存在"}
            n = len(self.vouchers) + 1
            made = {**voucher, "id": str(20_000 + n), "voucher_no": f"记-{n:04d}"}
            self.vouchers[voucher["reserve2"]] = made
            self.by_biz_id[biz_id] = voucher["reserve2"]
        return {"errcode": "0", "errmsg": "", "id": made["id"], "voucher_no": made["voucher_no"]}


def _check(voucher: Any) -> list[str]:
    if not isinstance(voucher, dict):
        return ["缺少 voucher"]
    problems = []
    if voucher.get("voucher_type") != "记":
        problems.append(f"凭证类别 {voucher.get('voucher_type')} 不存在")
    try:
        day = datetime.date.fromisoformat(str(voucher.get("date")))
        if (voucher.get("fiscal_year"), voucher.get("accounting_period")) != (day.year, day.month):
            problems.append("会计年度、期间与制单日期不符")
    except ValueError:
        problems.append("制单日期格式错误")
    if not voucher.get("reserve2") or voucher.get("voucher_making_system") != "CDM":
        problems.append("传入外部凭证业务号 reserve2 时 voucher_making_system 必须为 CDM")
    entries = voucher.get("entry")
    if not isinstance(entries, list) or not entries:
        return [*problems, "分录不能为空"]
    debit = credit = Decimal(0)
    for n, entry in enumerate(entries, 1):
        account = entry.get("account_code")
        if account not in ACCOUNTS:
            problems.append(f"第{n}行：科目 {account} 不存在")
            continue
        try:
            d = Decimal(str(entry.get("natural_debit_currency", 0)))
            c = Decimal(str(entry.get("natural_credit_currency", 0)))
        except InvalidOperation:
            problems.append(f"第{n}行：金额格式错误")
            continue
        if (d == 0) == (c == 0):
            problems.append(f"第{n}行：借方、贷方金额必须且只能填一个")
        if not entry.get("abstract"):
            problems.append(f"第{n}行：摘要不能为空")
        needed = ACCOUNTS[account]
        if needed and not (entry.get("auxiliary") or {}).get(needed):
            problems.append(f"第{n}行：科目 {account} 需要辅助核算 {needed}")
        debit, credit = debit + d, credit + c
    if debit != credit:
        problems.append(f"借贷不平衡：借 {debit} 贷 {credit}")
    return problems
