"""Exceptions the library raises for bad input. Messages say what is wrong and what to do."""


class MyoLabelError(Exception):
    """Base of every error the library raises on purpose."""


class UnsupportedImage(MyoLabelError):
    """The file is not an image we can read, or its content is not usable as CT."""


class InvalidArray(MyoLabelError, ValueError):
    """An array argument has the wrong shape, dtype or value range for the operation."""


# --- image input/output (mltasks.io) ---


class NotAnImage(UnsupportedImage):
    """The file or folder holds nothing MyoLabel can read as an image volume."""


class CorruptImage(UnsupportedImage):
    """The file looks like an image but is truncated or damaged."""


class SeriesNotFound(UnsupportedImage):
    """The requested DICOM SeriesInstanceUID is not in the folder or zip."""


class SeveralSeries(UnsupportedImage):
    """A DICOM folder or zip holds several series and none was chosen.

    Attributes:
        series: list of ``mltasks.io.SeriesInfo`` (UID, description, number of slices, ...).
    """

    def __init__(self, message: str, series: list) -> None:
        super().__init__(message)
        self.series = series


class NotCT(UnsupportedImage):
    """The DICOM series has a modality other than CT."""


class GantryTilt(UnsupportedImage):
    """The slices of a DICOM series are sheared by a gantry tilt."""


class IrregularSlices(UnsupportedImage):
    """The slice positions of a DICOM series are not evenly spaced (missing or duplicate slices)."""


class InvalidLabelMap(MyoLabelError):
    """A label map cannot be used with its CT."""


class EmptyLabelMap(InvalidLabelMap):
    """A label map holds no labelled voxel."""


class LabelMapOutsideImage(InvalidLabelMap):
    """A label map does not overlap its CT in physical space."""


class UnsafeZip(MyoLabelError):
    """A zip archive is refused: unsafe member paths, symlinks, or too large once extracted."""


class InvalidQuery(MyoLabelError):
    """Arguments of an active-learning query (scores, features, masks, tau) are unusable."""


class MissingAnswers(InvalidQuery):
    """An expert's answer leaves queried pixels unlabelled."""


class InvalidSimulationConfig(MyoLabelError):
    """An active-learning simulation configuration file is missing, malformed or inconsistent."""


class CalibrationError(MyoLabelError):
    """The predicted-Dice (PDC) calibration cannot be fitted from the pairs given."""


# --- networks, training and inference (mltasks.nets, train, infer) ---


class BadNetConfig(MyoLabelError, ValueError):
    """A network configuration, or an input to a network, does not fit."""


class InvalidCheckpoint(MyoLabelError):
    """A model checkpoint file cannot be loaded or is not a MyoLabel U-Net checkpoint."""


class InvalidTrainingData(MyoLabelError, ValueError):
    """Training slices or labels have the wrong shape, dtype or value range."""
