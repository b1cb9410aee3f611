//! The query methods that [`Client`](crate::Client) and
//! [`Transaction`](crate::Transaction) share, written once.

/// Expands to the query methods of a type with an `executor(&self) -> Executor<'_>` method.
macro_rules! query_methods {
    () => {
        /// Prepares a statement (analyzed and checked; cached by text) for
        /// repeated execution.
        ///
        /// # Errors
        /// [`Error::Refused`](crate::Error::Refused) with the reason when the
        /// statement does something encrypted columns do not allow; database errors.
        pub async fn prepare(&self, sql: &str) -> Result<crate::Statement, crate::Error> {
            self.executor().prepare(sql).await
        }

        /// Prepares `sql` with declared parameter types, as tokio-postgres's
        /// `prepare_typed`. A type declared for a parameter bound for an
        /// encrypted column must be the column's plaintext type; the server
        /// is told nothing of it (it types the parameter as ciphertext).
        ///
        /// # Errors
        /// [`Error::ParameterType`](crate::Error::ParameterType) for a
        /// declared type the encrypted column does not hold; as
        /// [`prepare`](Self::prepare).
        pub async fn prepare_typed(
            &self,
            sql: &str,
            types: &[postgres_types::Type],
        ) -> Result<crate::Statement, crate::Error> {
            self.executor().prepare_typed(sql, types).await
        }

        /// Runs `sql` with parameters of declared types (tokio-postgres's
        /// `query_typed`): prepared with [`prepare_typed`](Self::prepare_typed),
        /// then run.
        ///
        /// # Errors
        /// As [`prepare_typed`](Self::prepare_typed) and [`query`](Self::query).
        pub async fn query_typed(
            &self,
            sql: &str,
            params: &[(&(dyn postgres_types::ToSql + Sync), postgres_types::Type)],
        ) -> Result<Vec<crate::Row>, crate::Error> {
            let types: Vec<postgres_types::Type> =
                params.iter().map(|(_, ty)| ty.clone()).collect();
            let values: Vec<&(dyn postgres_types::ToSql + Sync)> =
                params.iter().map(|(value, _)| *value).collect();
            let statement = self.executor().prepare_typed(sql, &types).await?;
            self.executor().query(&statement, &values).await
        }

        /// Runs a statement and returns its rows, encrypted columns decrypted.
        /// Parameters bound for encrypted columns are encrypted before they
        /// are sent.
        ///
        /// # Errors
        /// A refused statement; a parameter whose Rust type does not fit its
        /// encrypted column; a key store that is unavailable; database errors.
        pub async fn query<S>(
            &self,
            statement: &S,
            params: &[&(dyn postgres_types::ToSql + Sync)],
        ) -> Result<Vec<crate::Row>, crate::Error>
        where
            S: crate::ToStatement + ?Sized,
        {
            self.executor().query(statement, params).await
        }

        /// Like [`query`](Self::query), for exactly one row.
        ///
        /// # Errors
        /// As `query`, and [`Error::RowCount`](crate::Error::RowCount).
        pub async fn query_one<S>(
            &self,
            statement: &S,
            params: &[&(dyn postgres_types::ToSql + Sync)],
        ) -> Result<crate::Row, crate::Error>
        where
            S: crate::ToStatement + ?Sized,
        {
            self.executor().query_one(statement, params).await
        }

        /// Like [`query`](Self::query), for at most one row.
        ///
        /// # Errors
        /// As `query`, and [`Error::RowCount`](crate::Error::RowCount).
        pub async fn query_opt<S>(
            &self,
            statement: &S,
            params: &[&(dyn postgres_types::ToSql + Sync)],
        ) -> Result<Option<crate::Row>, crate::Error>
        where
            S: crate::ToStatement + ?Sized,
        {
            self.executor().query_opt(statement, params).await
        }

        /// Like [`query`](Self::query), streaming the rows as they arrive.
        ///
        /// # Errors
        /// As `query`; each streamed item may also fail.
        pub async fn query_raw<S>(
            &self,
            statement: &S,
            params: &[&(dyn postgres_types::ToSql + Sync)],
        ) -> Result<crate::RowStream<'_>, crate::Error>
        where
            S: crate::ToStatement + ?Sized,
        {
            self.executor().query_raw(statement, params).await
        }

        /// Runs a statement and returns the number of rows it affected.
        ///
        /// # Errors
        /// As [`query`](Self::query).
        pub async fn execute<S>(
            &self,
            statement: &S,
            params: &[&(dyn postgres_types::ToSql + Sync)],
        ) -> Result<u64, crate::Error>
        where
            S: crate::ToStatement + ?Sized,
        {
            self.executor().execute(statement, params).await
        }

        /// Runs one or more statements with the simple query protocol. The
        /// text is analyzed like any other: as it cannot carry parameters,
        /// a value stored into or compared with an encrypted column would be
        /// a literal, and is refused.
        ///
        /// # Errors
        /// A refused statement; database errors.
        pub async fn batch_execute(&self, sql: &str) -> Result<(), crate::Error> {
            self.executor().batch_execute(sql).await
        }

        /// Runs text with the simple query protocol and returns its messages,
        /// values as text (tokio-postgres's `simple_query`). The text is
        /// analyzed as [`batch_execute`](Self::batch_execute)'s is.
        ///
        /// # Errors
        /// [`Error::TextResults`](crate::Error::TextResults) for text that
        /// touches a table with encrypted columns (text results cannot be
        /// decrypted: use [`query`](Self::query)); as
        /// [`batch_execute`](Self::batch_execute).
        pub async fn simple_query(
            &self,
            sql: &str,
        ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, crate::Error> {
            self.executor().simple_query(sql).await
        }

        /// Explains what aepg does with a statement: each parameter's target
        /// column, setting, mode and key; each result column's decryption.
        ///
        /// # Errors
        /// The refusal, with its reason, when the statement is refused.
        pub async fn explain(&self, sql: &str) -> Result<crate::Explanation, crate::Error> {
            let statement = self.executor().prepare(sql).await?;
            Ok(crate::Explanation::of(&statement))
        }

        /// Starts a binary bulk load, `COPY table (columns) FROM STDIN
        /// (FORMAT binary)`: rows written to the returned writer are sent
        /// as the server's binary COPY format, the values of encrypted
        /// columns encrypted (and checked, typmods applied) as parameters of
        /// the equivalent `INSERT` would be. The `COPY` is planned as that
        /// `INSERT`: what it would refuse, the `COPY` refuses.
        ///
        /// ```no_run
        /// # async fn demo(client: &aepg::Client) -> Result<(), aepg::Error> {
        /// let mut writer = client
        ///     .copy_in("COPY patients (id, name, ssn) FROM STDIN (FORMAT binary)")
        ///     .await?;
        /// writer.write(&[&1i32, &"Ada", &"078-05-1120"]).await?;
        /// let stored = writer.finish().await?;
        /// # Ok(()) }
        /// ```
        ///
        /// # Errors
        /// [`Error::CopyRefused`](crate::Error::CopyRefused) for text format, a
        /// missing column list, a server file or program, options other than
        /// `FORMAT` and `FREEZE`; the `INSERT`'s refusal; database errors.
        pub async fn copy_in(&self, sql: &str) -> Result<crate::CopyInWriter, crate::Error> {
            self.executor().copy_in(sql).await
        }

        /// Runs a binary `COPY table (columns) TO STDOUT (FORMAT binary)` or
        /// `COPY (query) TO STDOUT (FORMAT binary)` and streams its rows,
        /// encrypted columns decrypted, as [`query_raw`](Self::query_raw)
        /// does. The `COPY` is planned as its query.
        ///
        /// # Errors
        /// [`Error::CopyRefused`](crate::Error::CopyRefused) as for
        /// [`copy_in`](Self::copy_in); the query's refusal; database errors.
        /// The stream's items: a row whose cell cannot be decrypted fails
        /// only that column's `try_get`; a row the server sent malformed is
        /// [`Error::CopyData`](crate::Error::CopyData) and the rows after it
        /// are still read; a malformed header, data that ends without its
        /// trailer or follows it, or an error of the server or the
        /// connection is the stream's last item.
        pub async fn copy_out(&self, sql: &str) -> Result<crate::RowStream<'static>, crate::Error> {
            self.executor().copy_out(sql).await
        }
    };
}

pub(crate) use query_methods;
