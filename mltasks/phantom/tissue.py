"""Tissue classes of the phantom and their clinical CT numbers (HU)."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

from mltasks.phantom.params import PatientParams


class T(IntEnum):
    AIR = 0
    SKIN = 1
    SUBQ_FAT = 2
    FAT = 3  # intermuscular fat and fat planes
    MUSCLE = 4
    CORTEX = 5
    CANCELLOUS = 6
    MARROW = 7
    JOINT = 8
    CSF = 9
    DISC = 10
    VESSEL = 11
    BOWEL = 12
    URINE = 13
    GAS = 14
    TABLE_SHELL = 15
    TABLE_FOAM = 16
    BLOCK = 17
    ROD = 18  # ROD + i for rod i (5 rods)
    # the patient's arms (``mltasks.phantom.arms``): tissue outside the body mask
    ARM_SKIN = 23
    ARM_FAT = 24
    ARM_MUSCLE = 25
    ARM_CORTEX = 26
    ARM_MARROW = 27


N_TISSUES = int(T.ARM_MARROW) + 1
BONE = (T.CORTEX, T.CANCELLOUS, T.MARROW, T.ARM_CORTEX, T.ARM_MARROW)


def base_hu(p: PatientParams) -> np.ndarray:
    """(N_TISSUES,) float64 HU of every tissue class for one patient."""
    hu = np.zeros(N_TISSUES)
    hu[T.AIR] = -1000.0
    hu[T.SKIN] = 35.0
    hu[T.SUBQ_FAT] = p.fat_hu
    hu[T.FAT] = p.fat_hu + 8.0
    hu[T.MUSCLE] = p.muscle_hu
    hu[T.CORTEX] = p.cortex_hu
    hu[T.CANCELLOUS] = p.cancellous_hu
    hu[T.MARROW] = p.marrow_hu
    hu[T.JOINT] = 70.0
    hu[T.CSF] = 12.0
    hu[T.DISC] = 85.0
    hu[T.VESSEL] = 40.0
    hu[T.BOWEL] = 28.0
    hu[T.URINE] = 8.0
    hu[T.GAS] = -950.0
    hu[T.TABLE_SHELL] = 350.0
    hu[T.TABLE_FOAM] = -880.0
    hu[T.BLOCK] = 15.0
    hu[T.ROD : T.ROD + 5] = p.phantom_rods
    hu[T.ARM_SKIN] = hu[T.SKIN]
    hu[T.ARM_FAT] = hu[T.SUBQ_FAT]
    hu[T.ARM_MUSCLE] = hu[T.MUSCLE]
    hu[T.ARM_CORTEX] = hu[T.CORTEX]
    hu[T.ARM_MARROW] = hu[T.MARROW]
    return hu
