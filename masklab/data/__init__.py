"""Data: the dataset registry (`registry`), IDX and .npz readers (`idx`, `npz`),
checked downloads (`download`) and the device-resident batch iterator (`batches`)."""
