"""Asset browser: the server's catalogue with search, filters, details and Secure Import.

The catalogue loads on a worker thread. Search matches name, project and
creator; the project and format boxes filter on exact values. Secure Import
runs the core's ``secure_import`` behind a :class:`ProgressDialog`, then
hands the verified result to the host's importer (``on_imported``) on the UI
thread, because host APIs (``hou``, ``maya.cmds``) must only be called there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Cancelled, SealportError
from ..progress import Progress
from .error_dialog import ErrorDialog
from .progress_dialog import ProgressDialog, human_size
from .qt import QtCore, QtGui, QtWidgets, Signal
from .worker import Task, start

COLUMNS = [
    ("name", "Name"),
    ("project", "Project"),
    ("format", "Format"),
    ("version", "Version"),
    ("size", "Size"),
    ("created_by", "Created by"),
    ("created_at", "Created"),
]
ALL = "All"
ASSET_ROLE = int(QtCore.Qt.ItemDataRole.UserRole) + 1
SORT_ROLE = int(QtCore.Qt.ItemDataRole.UserRole) + 2


def cell_text(asset: dict[str, Any], key: str) -> str:
    value = asset.get(key, "")
    if key == "size" and isinstance(value, int):
        return human_size(value)
    if key == "format":
        return str(value).upper()
    if key == "created_at" and isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(value))
    return "" if value is None else str(value)


class AssetFilter(QtCore.QSortFilterProxyModel):
    """Search text over name/project/creator, plus exact project and format filters."""

    def __init__(self, parent: QtCore.QObject | None = None) -> None:
        super().__init__(parent)
        self.text = ""
        self.project = ALL
        self.format = ALL

    def set_filters(self, text: str, project: str, fmt: str) -> None:
        # Qt >= 6.10 wants begin/endFilterChange around the change; older Qt (and
        # PySide2) only has invalidateFilter.
        if hasattr(self, "beginFilterChange"):
            self.beginFilterChange()
            self.text, self.project, self.format = text.strip().lower(), project, fmt
            self.endFilterChange()
        else:
            self.text, self.project, self.format = text.strip().lower(), project, fmt
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: Any) -> bool:  # noqa: N802
        model = self.sourceModel()
        asset = model.index(row, 0, parent).data(ASSET_ROLE) or {}
        if self.project != ALL and str(asset.get("project")) != self.project:
            return False
        if self.format != ALL and str(asset.get("format", "")).upper() != self.format:
            return False
        if self.text:
            hay = " ".join(str(asset.get(k, "")) for k in ("name", "project", "created_by"))
            return self.text in hay.lower()
        return True


class AssetBrowser(QtWidgets.QDialog):
    """Browse and import; ``imported`` fires with (ImportResult, host node names)."""

    imported = Signal(object, object)

    def __init__(
        self,
        client: Any,
        out_dir: Callable[[], Path],
        on_imported: Callable[[Any], list[str]] | None = None,
        parent: QtWidgets.QWidget | None = None,
        *,
        show_errors: bool = True,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sealportAssetBrowser")
        self.setWindowTitle("Sealport: Secure Import")
        self.resize(860, 480)
        self.client = client
        self.out_dir = out_dir
        self.on_imported = on_imported
        self.show_errors = show_errors
        self.assets: list[dict[str, Any]] = []
        self.last_error: SealportError | None = None
        self.last_result: Any = None
        self.loading = False
        self.progress_dialog: ProgressDialog | None = None
        self.error_dialog: ErrorDialog | None = None

        self.search = QtWidgets.QLineEdit()
        self.search.setPlaceholderText("Search name, project, creator…")
        self.search.setClearButtonEnabled(True)
        self.project_box = QtWidgets.QComboBox()
        self.format_box = QtWidgets.QComboBox()
        self.refresh_button = QtWidgets.QPushButton("Refresh")
        self.refresh_button.clicked.connect(self.refresh)
        bar = QtWidgets.QHBoxLayout()
        bar.addWidget(self.search, 1)
        bar.addWidget(QtWidgets.QLabel("Project"))
        bar.addWidget(self.project_box)
        bar.addWidget(QtWidgets.QLabel("Format"))
        bar.addWidget(self.format_box)
        bar.addWidget(self.refresh_button)

        self.model = QtGui.QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels([title for _, title in COLUMNS])
        self.proxy = AssetFilter(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.table = QtWidgets.QTableView()
        self.table.setModel(self.proxy)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSortingEnabled(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.table.doubleClicked.connect(lambda _index: self.secure_import())

        self.details = QtWidgets.QGroupBox("Details")
        form = QtWidgets.QFormLayout(self.details)
        self.detail_labels: dict[str, QtWidgets.QLabel] = {}
        for key, title in [("asset_id", "Asset id"), *COLUMNS]:
            label = QtWidgets.QLabel("")
            label.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            label.setWordWrap(True)
            self.detail_labels[key] = label
            form.addRow(title + ":", label)
        self.details.setMinimumWidth(240)

        split = QtWidgets.QSplitter()
        split.addWidget(self.table)
        split.addWidget(self.details)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)

        self.status = QtWidgets.QLabel("")
        self.import_button = QtWidgets.QPushButton("Secure Import")
        self.import_button.setObjectName("sealportSecureImport")
        self.import_button.setEnabled(False)
        self.import_button.setDefault(True)
        self.import_button.clicked.connect(self.secure_import)
        close = QtWidgets.QPushButton("Close")
        close.clicked.connect(self.close)
        bottom = QtWidgets.QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.import_button)
        bottom.addWidget(close)

        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(split, 1)
        layout.addLayout(bottom)

        self.search.textChanged.connect(self._apply_filters)
        self.project_box.currentTextChanged.connect(self._apply_filters)
        self.format_box.currentTextChanged.connect(self._apply_filters)

    # --- catalogue --------------------------------------------------------------------------
    def refresh(self) -> None:
        """Load the catalogue on a worker thread."""
        if self.loading:
            return
        self.loading = True
        self.refresh_button.setEnabled(False)
        self.status.setText("Loading the catalogue…")
        task = Task(lambda _p: self.client.assets())
        task.signals.succeeded.connect(self.set_assets)
        task.signals.failed.connect(self._load_failed)
        self._load_task = task
        start(task)

    def _load_failed(self, error: SealportError) -> None:
        self.loading = False
        self.refresh_button.setEnabled(True)
        self.status.setText("Could not load the catalogue.")
        self._report(error)

    def set_assets(self, assets: list[dict[str, Any]]) -> None:
        self.loading = False
        self.refresh_button.setEnabled(True)
        self.assets = list(assets)
        self.model.removeRows(0, self.model.rowCount())
        for asset in self.assets:
            row = []
            for key, _ in COLUMNS:
                item = QtGui.QStandardItem(cell_text(asset, key))
                value = asset.get(key)
                item.setData(
                    value if isinstance(value, int | float) else cell_text(asset, key).lower(),
                    SORT_ROLE,
                )
                row.append(item)
            row[0].setData(asset, ASSET_ROLE)
            self.model.appendRow(row)
        self._fill_box(self.project_box, sorted({str(a.get("project", "")) for a in self.assets}))
        self._fill_box(
            self.format_box, sorted({str(a.get("format", "")).upper() for a in self.assets})
        )
        self.table.sortByColumn(0, QtCore.Qt.SortOrder.AscendingOrder)
        self.table.resizeColumnsToContents()
        self._apply_filters()
        if self.proxy.rowCount() and not self.table.selectionModel().hasSelection():
            self.table.selectRow(0)

    @staticmethod
    def _fill_box(box: QtWidgets.QComboBox, values: list[str]) -> None:
        current = box.currentText()
        box.blockSignals(True)
        box.clear()
        box.addItems([ALL, *values])
        box.setCurrentText(current if current in values else ALL)
        box.blockSignals(False)

    def _apply_filters(self, *_args: Any) -> None:
        self.proxy.set_filters(
            self.search.text(), self.project_box.currentText(), self.format_box.currentText()
        )
        shown = self.proxy.rowCount()
        self.status.setText(f"{shown} of {len(self.assets)} assets")
        self._selection_changed()

    def visible_assets(self) -> list[dict[str, Any]]:
        return [self.proxy.index(r, 0).data(ASSET_ROLE) for r in range(self.proxy.rowCount())]

    # --- selection and details ------------------------------------------------------------
    def selected_asset(self) -> dict[str, Any] | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        asset = rows[0].data(ASSET_ROLE)
        return dict(asset) if asset else None

    def select_asset(self, asset_id: str) -> bool:
        for r in range(self.proxy.rowCount()):
            if (self.proxy.index(r, 0).data(ASSET_ROLE) or {}).get("asset_id") == asset_id:
                self.table.selectRow(r)
                return True
        return False

    def _selection_changed(self, *_args: Any) -> None:
        asset = self.selected_asset()
        self.import_button.setEnabled(asset is not None and self.progress_dialog is None)
        for key, label in self.detail_labels.items():
            label.setText(cell_text(asset, key) if asset else "")

    # --- import -----------------------------------------------------------------------------
    def secure_import(self) -> ProgressDialog | None:
        """Start importing the selected asset behind a progress dialog (non-blocking).

        When the worker finishes, the verified result goes to the host's importer on
        the UI thread; errors open an error dialog; a cancel leaves nothing behind.
        """
        asset = self.selected_asset()
        if asset is None or self.progress_dialog is not None:
            return None
        asset_id = str(asset["asset_id"])
        out_dir = self.out_dir()

        def work(progress: Progress) -> Any:
            return self.client.secure_import(asset_id, out_dir, progress)

        dialog = ProgressDialog(f"Secure Import: {asset.get('name', asset_id)}", work, self)
        dialog.finished.connect(lambda _code: self._import_finished(dialog))
        self.progress_dialog = dialog
        self.import_button.setEnabled(False)
        self.status.setText(f"Importing {asset.get('name', asset_id)}…")
        dialog.start()
        return dialog

    def _import_finished(self, dialog: ProgressDialog) -> None:
        self.progress_dialog = None
        self._selection_changed()
        if isinstance(dialog.error, Cancelled):
            self.status.setText("Import cancelled; nothing was imported.")
        elif dialog.error is not None:
            self.status.setText("Import failed; nothing was imported.")
            self._report(dialog.error)
        else:
            self.hand_to_host(dialog.result_value)

    def hand_to_host(self, result: Any) -> Any:
        nodes: list[str] = []
        if self.on_imported is not None:
            try:
                nodes = list(self.on_imported(result))
            except SealportError as error:
                self.status.setText("Verified, but the host could not import it.")
                self._report(error)
                return None
        self.last_result = result
        where = f" as {', '.join(nodes)}" if nodes else f" to {result.path}"
        self.status.setText(f"Imported {result.manifest.name} v{result.manifest.version}{where}.")
        self.imported.emit(result, nodes)
        return result

    def _report(self, error: SealportError) -> None:
        self.last_error = error
        if self.show_errors:
            self.error_dialog = ErrorDialog(error, self)
            self.error_dialog.open()
