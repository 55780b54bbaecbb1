"""Data: the dataset registry (`registry`), IDX and .npz readers (`idx`, `npz`), checked
downloads (`download`), the device-resident batch iterator (`batches`), a run's three
splits (`splits`), the checks of a spec against its data (`checks`), and ops
materialised over a split for `masklab mask/noise` (`materialize`)."""
